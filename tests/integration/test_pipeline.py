"""DynamoDB writes, read back from moto's real stream, forwarded and compacted, equal the table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from support import Pipeline, assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.reader import Reader
from chroma_compactor.settings import QueueType


@pytest.mark.parametrize("queue_type", [QueueType.STANDARD, QueueType.FIFO], indirect=True)
def test_puts_updates_and_deletes_reach_the_snapshot(pipeline: Pipeline, reader: Reader) -> None:
    # GIVEN records written, rewritten with new metadata and documents, and some deleted
    for i in range(30):
        pipeline.put(
            "docs", f"id-{i}", rev=1, seed=i, document=f"doc {i}", metadata={"n": i, "tag": "a"}
        )
    for i in range(0, 30, 3):
        pipeline.put("docs", f"id-{i}", rev=2, seed=100 + i, metadata={"n": i * 10, "flag": True})
    for i in range(0, 30, 5):
        pipeline.delete("docs", f"id-{i}")
    pipeline.put("docs", "id-0", rev=5, seed=7, document="re-created")

    # WHEN the stream is forwarded and the queue compacted
    forwarded = pipeline.forward_stream()
    reports = pipeline.drain(pipeline.compactor("a"))

    # THEN the latest snapshot holds exactly the table's records
    assert forwarded.sent == 30 + 10 + 6 + 1 and not forwarded.failed_sequence_numbers
    assert all(not o.abandoned for r in reports for o in r.outcomes)
    assert_same_records(snapshot_state(reader, "docs"), pipeline.table_state("docs"))
    assert pipeline.queue_depth() == (0, 0)


def test_metadata_keys_removed_in_the_table_are_removed_from_the_snapshot(
    pipeline: Pipeline, reader: Reader
) -> None:
    pipeline.put("docs", "a", rev=1, seed=1, document="old", metadata={"keep": 1, "drop": "x"})
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    pipeline.put("docs", "a", rev=2, seed=1, metadata={"keep": 2})
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    assert_same_records(snapshot_state(reader, "docs"), pipeline.table_state("docs"))
    assert snapshot_state(reader, "docs")["a"][1:] == (None, {"keep": 2})


def test_collections_sharing_a_queue_get_separate_snapshots(
    pipeline: Pipeline, reader: Reader
) -> None:
    for i in range(5):
        pipeline.put("alpha", f"a{i}", rev=1, seed=i)
        pipeline.put("beta", f"b{i}", rev=1, seed=50 + i)
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    assert_same_records(snapshot_state(reader, "alpha"), pipeline.table_state("alpha"))
    assert_same_records(snapshot_state(reader, "beta"), pipeline.table_state("beta"))


def test_an_exported_snapshot_opens_with_stock_chroma(
    pipeline: Pipeline, reader: Reader, tmp_path: Path
) -> None:
    import chromadb

    for i in range(12):
        pipeline.put("docs", f"id-{i}", rev=1, seed=i, document=f"doc {i}")
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    manifest = reader.export("docs", tmp_path / "export")

    client = chromadb.PersistentClient(path=str(tmp_path / "export"))
    collection = client.get_collection("docs")
    assert collection.count() == manifest.record_count == 12
    hits = collection.query(query_embeddings=[vector(3)], n_results=1)
    assert hits["ids"] == [["id-3"]]
    client.close()
