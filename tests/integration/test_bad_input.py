"""A malformed message goes to the DLQ after its retries, with a clear log line; the rest commit."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.resources import MAX_RECEIVE_COUNT
from support import snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline

BAD_BODIES = {
    "not json": "{this is not json",
    "unknown op": '{"v":1,"op":"merge","collection":"docs","id":"x","rev":1}',
    "wrong dimension": ops.encode(ops.upsert("docs", "wide", 1, [0.5] * 3)),
}


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_malformed_message_ends_in_the_dlq_and_its_batch_commits(
    pipeline: Pipeline, reader: Reader, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    pipeline.send(ops.upsert("docs", "good1", 1, vector(1)))
    pipeline.send(BAD_BODIES[kind])
    pipeline.send(ops.upsert("docs", "good2", 1, vector(2)))
    compactor = pipeline.compactor("a")

    with caplog.at_level(logging.ERROR):
        first = pipeline.cycle(compactor)
        pipeline.drain(compactor)

    # The good ones are committed in the first cycle, the bad one is reported to Lambda ...
    assert len(first.failed_event_ids) == 1
    assert set(snapshot_state(reader, "docs")) == {"good1", "good2"}
    # ... retried maxReceiveCount times, then moved to the DLQ by SQS.
    assert pipeline.queue_depth() == (0, 0)
    assert pipeline.queue_depth(pipeline.created.dlq_url) == (1, 0)
    rejections = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(rejections) >= MAX_RECEIVE_COUNT
    assert all(
        first.failed_event_ids[0] == getattr(r, "message_id", None)
        for r in rejections
        if hasattr(r, "message_id")
    )
    reason = rejections[0].getMessage()
    assert {"not json": "not JSON", "unknown op": "op", "wrong dimension": "dimension 3"}[
        kind
    ] in reason


def test_a_record_chroma_rejects_fails_alone(pipeline: Pipeline, reader: Reader) -> None:
    # GIVEN a collection of dimension 8, then a batch where one upsert has another dimension
    compactor = pipeline.compactor("a")
    pipeline.send(ops.upsert("docs", "first", 1, vector(1)))
    pipeline.drain(compactor)
    pipeline.send(ops.upsert("docs", "ok", 1, vector(2)), ops.upsert("docs", "bad", 1, [1.0] * 4))

    report = pipeline.cycle(compactor)

    assert report.outcomes[0].failed == 1
    assert report.outcomes[0].committed_version == 2
    assert set(snapshot_state(reader, "docs")) == {"first", "ok"}
