"""The two Lambda handlers, called with Lambda-shaped events and configured by environment."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import enhanced_compaction_handler
import stream_forwarder
from chroma_compactor import ops
from chroma_compactor.pollers import LambdaContext
from support import snapshot_state, vector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chroma_compactor.reader import Reader
    from support import Pipeline

EVENTS = Path(__file__).parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def lambda_env(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in pipeline.settings.to_env().items():
        monkeypatch.setenv(name, value)
    enhanced_compaction_handler._compactor.cache_clear()
    enhanced_compaction_handler._queue_url.cache_clear()
    stream_forwarder._setup.cache_clear()
    yield
    enhanced_compaction_handler._compactor.cache_clear()
    enhanced_compaction_handler._queue_url.cache_clear()
    stream_forwarder._setup.cache_clear()


def sqs_event(pipeline: Pipeline) -> dict[str, Any]:
    """Receive what is on the queue and dress it as the event source mapping would."""
    template = load_event("sqs_event.json")["Records"][0]
    records = []
    for m in pipeline.receive_event():
        record = copy.deepcopy(template)
        record.update(messageId=m.message_id, receiptHandle=m.receipt_handle, body=m.body)
        record["eventSourceARN"] = pipeline.created.queue_arn
        records.append(record)
    return {"Records": records}


@pytest.mark.usefixtures("lambda_env")
def test_compaction_handler_reports_only_the_bad_message(
    pipeline: Pipeline, reader: Reader
) -> None:
    pipeline.send(
        ops.upsert("docs", "a", 1, vector(1)), "garbage", ops.upsert("docs", "b", 1, vector(2))
    )
    event = sqs_event(pipeline)
    bad_id = next(r["messageId"] for r in event["Records"] if r["body"] == "garbage")

    response = enhanced_compaction_handler.handler(event, LambdaContext("compactor"))  # type: ignore[arg-type]

    assert response == {"batchItemFailures": [{"itemIdentifier": bad_id}]}
    assert set(snapshot_state(reader, "docs")) == {"a", "b"}


@pytest.mark.usefixtures("lambda_env")
def test_compaction_handler_logs_counters_and_emits_metrics(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.send(
        ops.upsert("docs", "a", 1, vector(1)), ops.update("docs", "nope", 2, metadata={"k": 1})
    )

    with caplog.at_level(logging.INFO):
        enhanced_compaction_handler.handler(sqs_event(pipeline), LambdaContext("compactor"))  # type: ignore[arg-type]

    finished = next(r for r in caplog.records if r.getMessage() == "cycle finished")
    assert (finished.applied, finished.not_found, finished.committed_version) == (1, 1, 1)  # type: ignore[attr-defined]
    assert set(finished.phases_ms) >= {"lease", "apply", "upload", "commit", "delete"}  # type: ignore[attr-defined]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf and emf[-1]["Applied"] == [1.0] and emf[-1]["NotFound"] == [1.0]


@pytest.mark.usefixtures("lambda_env")
def test_stream_forwarder_sends_valid_records_and_reports_the_invalid_one(
    pipeline: Pipeline,
) -> None:
    response = stream_forwarder.handler(
        load_event("dynamodb_stream_event.json"), LambdaContext("compactor")
    )  # type: ignore[arg-type]

    assert response == {"batchItemFailures": [{"itemIdentifier": "113"}]}
    bodies = sorted((ops.decode(m.body) for m in pipeline.receive_event()), key=lambda op: op.id)
    assert [(op.op, op.id, op.rev) for op in bodies] == [
        (ops.OpKind.UPSERT, "a1", 1),
        (ops.OpKind.DELETE, "a2", 4),
    ]
    assert bodies[0].metadata == {"lang": "en", "score": 0.5, "ok": True}
    assert bodies[0].vector().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
