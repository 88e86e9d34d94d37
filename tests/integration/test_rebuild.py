"""`rebuild`: a collection's partitions rebuilt from a parallel scan of the table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.cli import main
from chroma_compactor.errors import ConfigurationError, LeaseBusy
from chroma_compactor.rebuild import rebuild, scan_source
from chroma_compactor.shards import Layout
from support import assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline

RECORDS = 40


def _stub(pipeline: Pipeline, collection: str, id_: str, rev: int) -> None:
    """What the writer's conditional delete leaves in the table: the delete's rev."""
    pipeline.clients.dynamodb.put_item(
        TableName=pipeline.names.source_table,
        Item={
            "collection": {"S": collection},
            "id": {"S": id_},
            "rev": {"N": str(rev)},
            "deleted": {"BOOL": True},
        },
    )


@pytest.fixture
def drifted(pipeline: Pipeline) -> Pipeline:
    """ "docs" compacted from the table, then table and snapshot made to differ both ways."""
    for i in range(RECORDS):
        pipeline.put("docs", f"id{i}", rev=1, seed=i, document=f"d{i}", metadata={"i": i})
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))
    # In the table, never forwarded: a new record, a changed one, a deleted one (with its stub).
    pipeline.put("docs", "new", rev=1, seed=500, document="new")
    pipeline.put("docs", "id1", rev=2, seed=501, document="changed")
    pipeline.delete("docs", "id2")
    _stub(pipeline, "docs", "id2", 2)
    # In the snapshot only: a record the table never had.
    pipeline.send(ops.upsert("docs", "ghost", 1, vector(600)))
    pipeline.drain(pipeline.compactor("a"))
    return pipeline


def test_a_rebuild_makes_the_snapshot_equal_the_table(drifted: Pipeline, reader: Reader) -> None:
    result = rebuild(drifted.compactor("a"), drifted.clients.dynamodb, "docs", segments=3)

    assert result.versions == {"docs": 3}
    assert (result.records, result.tombstones) == (RECORDS, 1)
    assert_same_records(snapshot_state(reader, "docs"), drifted.table_state("docs"))


def test_a_message_older_than_the_rebuild_is_refused_as_stale(
    drifted: Pipeline, reader: Reader
) -> None:
    rebuild(drifted.compactor("a"), drifted.clients.dynamodb, "docs")
    drifted.send(
        ops.upsert("docs", "id1", 1, vector(1), document="d1"),  # older than the table's rev 2
        ops.upsert("docs", "id2", 1, vector(2)),  # older than the delete's stub
    )
    (report,) = drifted.drain(drifted.compactor("a"))

    assert report.outcomes[0].stale == 2
    assert_same_records(snapshot_state(reader, "docs"), drifted.table_state("docs"))


def test_a_message_newer_than_the_rebuild_is_applied_after_it(
    drifted: Pipeline, reader: Reader
) -> None:
    rebuild(drifted.compactor("a"), drifted.clients.dynamodb, "docs")
    drifted.put("docs", "id3", rev=2, seed=700, document="later")
    drifted.forward_stream()
    drifted.drain(drifted.compactor("a"))

    assert snapshot_state(reader, "docs")["id3"][1] == "later"
    assert_same_records(snapshot_state(reader, "docs"), drifted.table_state("docs"))


def test_a_rebuild_refuses_while_a_compactor_holds_a_lease(drifted: Pipeline) -> None:
    busy = drifted.compactor("b")
    busy.leases.acquire("docs", "someone-else", 30)

    with pytest.raises(LeaseBusy, match=r"someone-else.*try again"):
        rebuild(drifted.compactor("a"), drifted.clients.dynamodb, "docs")
    assert drifted.compactor("a").pointers.read("docs").version == 2


def test_a_rebuild_of_a_sharded_collection_rebuilds_each_shard(
    pipeline: Pipeline, reader: Reader
) -> None:
    pipeline.settings = pipeline.settings.model_copy(update={"collection_shards": {"split": 3}})
    for i in range(RECORDS):
        pipeline.put("split", f"id{i}", rev=1, seed=i)
    result = rebuild(pipeline.compactor("a"), pipeline.clients.dynamodb, "split", segments=2)

    layout = Layout("split", 3)
    assert result.versions == dict.fromkeys(layout.partitions, 1)
    state = {}
    for partition in layout.partitions:
        state |= snapshot_state(reader, partition)
    assert_same_records(state, pipeline.table_state("split"))


def test_the_scan_reads_every_segment_and_only_the_collection(pipeline: Pipeline) -> None:
    for i in range(30):
        pipeline.put("docs", f"id{i}", rev=1, seed=i)
        pipeline.put("other", f"id{i}", rev=1, seed=i)
    seen: dict[int, int] = {}

    scan = scan_source(
        pipeline.clients.dynamodb,
        pipeline.names.source_table,
        "docs",
        4,
        seen.__setitem__,
    )

    assert sorted(op.id for op in scan.operations["docs"]) == sorted(f"id{i}" for i in range(30))
    assert set(scan.operations) == {"docs"}
    assert sorted(seen) == [0, 1, 2, 3]
    assert sum(seen.values()) == scan.scanned == 30


def test_the_rebuild_command_reports_each_partition(
    drifted: Pipeline, cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rebuild", "docs", "--segments", "2", "--yes"]) == 0

    out = capsys.readouterr()
    assert "rebuilt 'docs'" in out.out
    assert "version 3" in out.out


def test_a_rebuild_of_a_collection_nobody_has_refuses(drifted: Pipeline) -> None:
    with pytest.raises(ConfigurationError, match="no records of 'dcos'"):
        rebuild(drifted.compactor("a"), drifted.clients.dynamodb, "dcos")
    assert drifted.compactor("a").pointers.read("dcos").version == 0
