"""A malformed message goes to the DLQ after its retries, with a clear log line; the rest commit."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.resources import MAX_RECEIVE_COUNT
from support import snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline


def _upsert_body(**fields: object) -> str:
    """A well-formed upsert of id "bad" with some fields replaced (``None``: removed)."""
    body = json.loads(ops.encode(ops.upsert("docs", "bad", 1, vector(99))))
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None})


# Each kind of bad input, and the words its log line must contain.
CATALOGUE = {
    "malformed JSON": ("{this is not json", "not JSON"),
    "missing field": (_upsert_body(id=None), "id: Field required"),
    "wrong dimension": (ops.encode(ops.upsert("docs", "bad", 1, [0.5] * 3)), "dimension 3"),
    "NaN in embedding": (_upsert_body(embedding=[0.1] * 7 + [float("nan")]), "NaN or infinity"),
    "infinity in embedding": (_upsert_body(embedding=[float("inf")] * 8), "NaN or infinity"),
    "oversized document": (
        _upsert_body(document="x" * (ops.MAX_DOCUMENT_BYTES + 1)),
        f"over {ops.MAX_DOCUMENT_BYTES} bytes",
    ),
    "oversized metadata": (
        _upsert_body(metadata={"blob": "x" * ops.MAX_METADATA_BYTES}),
        f"over {ops.MAX_METADATA_BYTES} bytes",
    ),
    "metadata chroma rejects": (_upsert_body(metadata={"nested": {"a": 1}}), "metadata.nested"),
    "unknown collection (a name chroma cannot hold)": (
        _upsert_body(collection="no such collection"),
        "collection: String should match pattern",
    ),
    "unknown collection (a shard's reserved name)": (
        _upsert_body(collection="docs.s1-of-4"),
        "reserved for the shards",
    ),
    "unknown op": (_upsert_body(op="merge"), "op: Input should be"),
    "future schema version": (_upsert_body(v=2), "newer than this compactor understands"),
}


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_a_malformed_message_ends_in_the_dlq_and_its_batch_commits(
    pipeline: Pipeline, reader: Reader, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    body, reason = CATALOGUE[kind]
    pipeline.send(ops.upsert("docs", "good1", 1, vector(1)))
    pipeline.send(body)
    pipeline.send(ops.upsert("docs", "good2", 1, vector(2)))
    compactor = pipeline.compactor("a")

    with caplog.at_level(logging.ERROR):
        first = pipeline.cycle(compactor)
        pipeline.drain(compactor)

    # The good ones are committed in the first cycle, the bad one is reported to Lambda ...
    assert len(first.failed_event_ids) == 1
    assert set(snapshot_state(reader, "docs")) == {"good1", "good2"}
    # ... retried maxReceiveCount times, then moved to the DLQ by SQS, body intact.
    assert pipeline.queue_depth() == (0, 0)
    (dead,) = pipeline.clients.sqs.receive_message(QueueUrl=pipeline.created.dlq_url)["Messages"]
    assert dead["Body"] == body
    # Every receive was logged with the message id and the reason.
    rejections = [r for r in caplog.records if getattr(r, "message_id", None) == dead["MessageId"]]
    assert len(rejections) == MAX_RECEIVE_COUNT
    assert all(reason in r.getMessage() for r in rejections), rejections[0].getMessage()


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
