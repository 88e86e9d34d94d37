"""`reshard`: a collection rebuilt as M shards from the table, swapped in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from chroma_compactor.cli import main
from chroma_compactor.cycle import Hooks, Step
from chroma_compactor.errors import CommitRejected, ConfigurationError
from chroma_compactor.query import query
from chroma_compactor.rebuild import check_reshard, reshard
from chroma_compactor.settings import QueueType
from chroma_compactor.shards import Layout
from support import assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline

RECORDS = 120
PROBES = (0, 33, 77)


def _put(pipeline: Pipeline, start: int, stop: int, rev: int = 1) -> None:
    for i in range(start, stop):
        pipeline.put("docs", f"id{i}", rev=rev, seed=i, document=f"d{i}", metadata={"i": i})


def _state(reader: Reader, collection: str) -> dict[str, Any]:
    layout = reader.layouts.read(collection) or Layout(collection)
    state: dict[str, Any] = {}
    for partition in layout.partitions:
        part = snapshot_state(reader, partition)
        assert all(layout.partition_of(id_) == partition for id_ in part)
        state |= part
    return state


def _answers(reader: Reader) -> list[list[tuple[str, float]]]:
    return [
        [(h.id, h.distance) for h in query(reader, "docs", vector=vector(p).tolist(), k=8)]
        for p in PROBES
    ]


def _reshard(pipeline: Pipeline, shards: int, name: str = "op") -> None:
    reshard(pipeline.compactor(name), pipeline.clients.dynamodb, "docs", shards, segments=3)


@pytest.fixture
def docs(pipeline: Pipeline) -> Pipeline:
    """ "docs": one shard, compacted from the table through the stream."""
    _put(pipeline, 0, RECORDS)
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))
    return pipeline


def test_resharding_1_to_4_to_2_keeps_every_record(docs: Pipeline, reader: Reader) -> None:
    table = docs.table_state("docs")
    for shards in (4, 2):
        _reshard(docs, shards)

        assert reader.layouts.read("docs") == Layout("docs", shards)
        assert_same_records(_state(reader, "docs"), table)


def test_queries_over_the_resharded_collection_answer_as_before(
    docs: Pipeline, reader: Reader
) -> None:
    before = _answers(reader)
    _reshard(docs, 4)
    after_4 = _answers(reader)
    _reshard(docs, 2)
    after_2 = _answers(reader)

    for answers in (after_4, after_2):
        for got, want in zip(answers, before, strict=True):
            assert [i for i, _ in got] == [i for i, _ in want]
            assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=1e-5)


def test_old_partitions_are_retired_and_a_reused_name_continues_above_its_versions(
    docs: Pipeline, reader: Reader
) -> None:
    _reshard(docs, 2)
    pointers = docs.compactor("a").pointers
    retired = docs.clients.dynamodb.get_item(
        TableName=docs.names.control_table, Key={"pk": {"S": "pointer#docs"}}
    )["Item"]
    assert retired["retired"] == {"BOOL": True}
    assert [pointers.read(p).version for p in Layout("docs", 2).partitions] == [1, 1]

    _reshard(docs, 1)  # back to the name "docs", whose version 1 is retained in S3

    assert pointers.read("docs").version == 2
    assert (
        "retired"
        not in docs.clients.dynamodb.get_item(
            TableName=docs.names.control_table, Key={"pk": {"S": "pointer#docs"}}
        )["Item"]
    )
    assert docs.compactor("a").store.read_manifest("docs", 1).version == 1
    assert_same_records(_state(reader, "docs"), docs.table_state("docs"))


def test_gc_deletes_the_snapshots_of_retired_partitions_and_keeps_the_new_ones(
    docs: Pipeline, reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reshard(docs, 2)
    for name, value in docs.settings.to_env().items():
        monkeypatch.setenv(name, value)
    store = docs.compactor("a").store

    assert main(["gc", "--grace-seconds", "0"]) == 0

    assert store.list_versions("docs") == []
    assert not docs.clients.s3.list_objects_v2(
        Bucket=store.bucket, Prefix=store.blob_key("docs", "")
    ).get("Contents")
    assert [store.list_versions(p) for p in Layout("docs", 2).partitions] == [[1], [1]]
    assert_same_records(_state(reader, "docs"), docs.table_state("docs"))


@pytest.mark.parametrize("queue_type", [QueueType.STANDARD, QueueType.FIFO], indirect=True)
def test_messages_queued_before_a_reshard_are_applied_after_it(
    docs: Pipeline, reader: Reader
) -> None:
    _put(docs, 0, 10, rev=2)  # changed records ...
    _put(docs, RECORDS, RECORDS + 10)  # ... and new ones, queued but not compacted
    docs.forward_stream()
    _reshard(docs, 4)
    docs.drain(docs.compactor("a"))

    assert docs.queue_depth() == (0, 0)
    assert_same_records(_state(reader, "docs"), docs.table_state("docs"))


def test_a_write_during_the_reshards_scan_is_in_the_resharded_collection(
    docs: Pipeline, reader: Reader
) -> None:
    written: list[int] = []

    def write_once(segment: int, scanned: int) -> None:
        if not written:
            written.append(segment)
            docs.put("docs", "during", rev=1, seed=999, document="during")
            docs.put("docs", "id5", rev=2, seed=998, document="changed during")
            docs.forward_stream()

    reshard(docs.compactor("op"), docs.clients.dynamodb, "docs", 4, 3, write_once)
    docs.drain(docs.compactor("a"))

    state = _state(reader, "docs")
    assert state["during"][1] == "during"
    assert state["id5"][1] == "changed during"
    assert_same_records(state, docs.table_state("docs"))


class _ReshardFirst(Hooks):
    """Reshards while a compactor, having read the old layout, is about to take its lease."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.done = False

    def before(self, step: Step, collection: str) -> None:
        if step is Step.LEASE and not self.done:
            self.done = True
            _reshard(self.pipeline, 4)


@pytest.mark.parametrize("queue_type", [QueueType.STANDARD, QueueType.FIFO], indirect=True)
def test_a_compactor_with_the_old_layout_is_refused_and_its_messages_land_on_the_new_shards(
    docs: Pipeline, reader: Reader
) -> None:
    _put(docs, 0, 5, rev=3)
    docs.forward_stream()
    event = docs.receive_event()
    hooks = _ReshardFirst(docs)

    report = docs.cycle(docs.compactor("stale", hooks), event)

    assert hooks.done
    (outcome,) = report.outcomes
    assert outcome.collection == "docs"
    assert outcome.abandoned is not None
    assert "CommitRejected" in outcome.abandoned
    docs.drain(docs.compactor("stale", hooks))  # a fresh invocation reads the new layout
    assert docs.queue_depth() == (0, 0)
    assert_same_records(_state(reader, "docs"), docs.table_state("docs"))


@pytest.mark.parametrize(
    ("old", "shards", "message"),
    [
        (1, 1, "already has 1 shards"),
        (4, 0, "between 1 and 256"),
        (1, 257, "between 1 and 256"),
        (40, 30, "transaction of 111 items"),
    ],
)
def test_a_reshard_refuses_the_current_count_or_one_out_of_range(
    old: int, shards: int, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_reshard(Layout("docs", old), shards)


def test_the_reshard_command_refuses_with_a_clear_message(
    docs: Pipeline, cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reshard", "docs", "--shards", "1", "--yes"]) == 2

    assert "'docs' already has 1 shards" in capsys.readouterr().err


def test_the_reshard_command_reports_the_new_partitions(
    docs: Pipeline, cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reshard", "docs", "--shards", "2", "--segments", "2", "--yes"]) == 0

    captured = capsys.readouterr()
    assert "docs.s1-of-2 is version 1" in captured.out
    assert "segment 1:" in captured.err


def test_an_old_partition_that_never_committed_is_retired_too(
    pipeline: Pipeline, reader: Reader
) -> None:
    pipeline.settings = pipeline.settings.model_copy(update={"collection_shards": {"docs": 2}})
    layout = Layout("docs", 2)
    ids = [f"id{i}" for i in range(20) if layout.partition_of(f"id{i}") == layout.partitions[0]]
    for id_ in ids:
        pipeline.put("docs", id_, rev=1, seed=1)
    pipeline.forward_stream()
    c = pipeline.compactor("a")
    pipeline.drain(c)
    assert c.pointers.read(layout.partitions[1]).version == 0

    _reshard(pipeline, 1)

    lease = c.leases.acquire(layout.partitions[1], c.owner, 30)
    with pytest.raises(CommitRejected):
        c.pointers.commit(
            c.leases, lease, expected_version=0, new_version=1, manifest_key="k", record_count=1
        )
    assert c.pointers.read(layout.partitions[1]).version == 0
    assert sorted(_state(reader, "docs")) == sorted(ids)


def test_status_lists_the_new_partitions_not_the_retired_ones(docs: Pipeline) -> None:
    _reshard(docs, 2)

    assert docs.compactor("a").pointers.collections() == Layout("docs", 2).partitions


def test_messages_refused_by_a_retired_partition_reach_the_new_shards_in_the_same_invocation(
    docs: Pipeline, reader: Reader
) -> None:
    """After the refusal the compactor reads the layout again, so when its next collection's
    greedy fetch takes the messages back they go to the new shards, not the retired one."""
    _put(docs, 0, 5, rev=3)
    docs.forward_stream()
    event = docs.receive_event()
    docs.put("other", "x", rev=1, seed=1)
    docs.forward_stream()
    event += docs.receive_event()
    hooks = _ReshardFirst(docs)

    report = docs.cycle(docs.compactor("stale", hooks), event)

    assert [o.collection for o in report.outcomes][:2] == ["docs", "other"]
    assert all(o.abandoned is None for o in report.outcomes[1:])
    assert docs.queue_depth() == (0, 0)
    assert_same_records(_state(reader, "docs"), docs.table_state("docs"))
