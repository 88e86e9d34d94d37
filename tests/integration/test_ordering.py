"""The ledger's promises: order and duplicates do not matter, deleted records stay deleted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chroma_compactor import ops
from support import DIM, snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline


def test_update_of_a_missing_id_is_counted_and_skipped(pipeline: Pipeline, reader: Reader) -> None:
    pipeline.send(
        ops.upsert("docs", "present", 1, vector(1)),
        ops.update("docs", "ghost", 4, metadata={"x": 1}),
    )
    (report,) = pipeline.drain(pipeline.compactor("a"))

    (outcome,) = report.outcomes
    assert outcome.not_found == 1 and outcome.failed == 0
    assert set(snapshot_state(reader, "docs")) == {"present"}
    assert report.failed_event_ids == []


def test_an_older_upsert_after_a_delete_does_not_resurrect(
    pipeline: Pipeline, reader: Reader
) -> None:
    compactor = pipeline.compactor("a")
    pipeline.send(
        ops.upsert("docs", "keep", 1, vector(0)), ops.upsert("docs", "gone", 3, vector(1))
    )
    pipeline.drain(compactor)
    pipeline.send(ops.delete("docs", "gone", 5))
    pipeline.drain(compactor)

    # WHEN an upsert older than the delete arrives late
    pipeline.send(ops.upsert("docs", "gone", 4, vector(2)))
    (report,) = pipeline.drain(compactor)

    assert report.outcomes[0].stale == 1
    assert set(snapshot_state(reader, "docs")) == {"keep"}


def test_a_delete_arriving_before_its_upsert_still_wins(pipeline: Pipeline, reader: Reader) -> None:
    compactor = pipeline.compactor("a")
    pipeline.send(ops.upsert("docs", "keep", 1, vector(0)), ops.delete("docs", "x", 2))
    pipeline.drain(compactor)
    pipeline.send(ops.upsert("docs", "x", 2, vector(1)))
    pipeline.drain(compactor)

    assert set(snapshot_state(reader, "docs")) == {"keep"}


def test_the_same_messages_delivered_twice_change_nothing(
    pipeline: Pipeline, reader: Reader
) -> None:
    batch = [
        ops.upsert("docs", f"id{i}", 2, vector(i), document=f"d{i}", metadata={"i": i})
        for i in range(10)
    ] + [ops.update("docs", "id3", 3, metadata={"i": 33}), ops.delete("docs", "id4", 3)]
    compactor = pipeline.compactor("a")
    pipeline.send(*batch)
    pipeline.drain(compactor)
    version = pipeline.compactor("b").pointers.read("docs").version
    first = snapshot_state(reader, "docs")

    pipeline.send(*batch)
    (report,) = pipeline.drain(compactor)

    assert report.outcomes[0].stale == len(batch)
    assert report.outcomes[0].committed_version is None  # nothing new to publish
    assert compactor.pointers.read("docs").version == version
    assert snapshot_state(reader, "docs") == first
    assert first["id3"][2] == {"i": 33}


def test_a_metadata_update_keeps_embedding_and_document(pipeline: Pipeline, reader: Reader) -> None:
    compactor = pipeline.compactor("a")
    pipeline.send(
        ops.upsert("docs", "a", 1, vector(9), document="text", metadata={"k": 1, "old": 2})
    )
    pipeline.drain(compactor)
    pipeline.send(ops.update("docs", "a", 2, metadata={"k": 5}))
    pipeline.drain(compactor)

    embedding, document, metadata = snapshot_state(reader, "docs")["a"]
    assert (document, metadata) == ("text", {"k": 5})
    assert len(embedding) == DIM * 4


def test_reordered_full_state_messages_converge_on_the_newest(
    pipeline: Pipeline, reader: Reader
) -> None:
    history = [
        ops.upsert("docs", "a", rev, vector(rev), metadata={"rev": rev}) for rev in range(1, 6)
    ]
    compactor = pipeline.compactor("a")
    for op in [history[4], history[1], history[3], history[0], history[2]]:
        pipeline.send(op)
        pipeline.drain(compactor)

    assert snapshot_state(reader, "docs")["a"][2] == {"rev": 5}
