"""redrive(): DLQ messages go back to their main queue, and only what arrived leaves the DLQ.

moto 5.2.5 has no message move tasks (in-process it raises NotImplementedError, its server
answers 500), so the moto tests run the receive -> send -> delete fallback; the move-task path
is checked against botocore's Stubber with the responses SQS documents.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from chroma_compactor import ops
from chroma_compactor import redrive as redrive_module
from chroma_compactor.cli import main
from chroma_compactor.errors import CompactorError
from chroma_compactor.redrive import redrive
from chroma_compactor.settings import QueueType
from support import snapshot_state, vector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_sqs import SQSClient

    from chroma_compactor.reader import Reader
    from support import Pipeline

BOTH_QUEUE_TYPES = pytest.mark.parametrize(
    "queue_type", [QueueType.STANDARD, QueueType.FIFO], indirect=True
)


def _fill_the_dlq(pipeline: Pipeline, *bodies: str) -> None:
    """Unparseable bodies: rejected on every receive until SQS moves them to the DLQ."""
    pipeline.send(*bodies)
    pipeline.drain(pipeline.compactor("a"))
    assert pipeline.queue_depth(pipeline.created.dlq_url) == (len(bodies), 0)


def _receive_all(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=60,
        MessageSystemAttributeNames=["MessageGroupId"],
    ).get("Messages", []):
        got.extend(batch)  # type: ignore[arg-type]
    return got


@BOTH_QUEUE_TYPES
def test_redrive_returns_how_many_messages_it_moved(pipeline: Pipeline) -> None:
    _fill_the_dlq(pipeline, "bad 0", "bad 1", "bad 2")

    assert redrive(pipeline.clients.sqs, pipeline.created.queue_url) == 3


@BOTH_QUEUE_TYPES
def test_redrive_empties_the_dlq_into_the_main_queue(pipeline: Pipeline) -> None:
    _fill_the_dlq(pipeline, "bad 0", "bad 1", "bad 2")

    redrive(pipeline.clients.sqs, pipeline.created.queue_url)

    assert pipeline.queue_depth(pipeline.created.dlq_url) == (0, 0)
    bodies = [m["Body"] for m in _receive_all(pipeline.clients.sqs, pipeline.created.queue_url)]
    assert sorted(bodies) == ["bad 0", "bad 1", "bad 2"]


@pytest.mark.parametrize("queue_type", [QueueType.FIFO], indirect=True)
def test_a_fifo_redrive_keeps_each_messages_group(pipeline: Pipeline) -> None:
    _fill_the_dlq(pipeline, "bad 0", "bad 1")

    redrive(pipeline.clients.sqs, pipeline.created.queue_url)

    moved = _receive_all(pipeline.clients.sqs, pipeline.created.queue_url)
    assert sorted((m["Body"], m["Attributes"]["MessageGroupId"]) for m in moved) == [
        ("bad 0", "compaction:bad 0"),
        ("bad 1", "compaction:bad 1"),
    ]


def test_more_than_one_batch_of_ten_is_moved(pipeline: Pipeline) -> None:
    _fill_the_dlq(pipeline, *(f"bad {i}" for i in range(23)))

    assert redrive(pipeline.clients.sqs, pipeline.created.queue_url) == 23

    assert pipeline.queue_depth(pipeline.created.dlq_url) == (0, 0)
    assert pipeline.queue_depth() == (23, 0)


def test_an_empty_dlq_moves_nothing(pipeline: Pipeline) -> None:
    assert redrive(pipeline.clients.sqs, pipeline.created.queue_url) == 0

    assert pipeline.queue_depth() == (0, 0)


def test_a_redriven_message_is_compacted(pipeline: Pipeline, reader: Reader) -> None:
    # GIVEN a valid operation that ended in the DLQ (say, while a permission was missing)
    pipeline.clients.sqs.send_message(
        QueueUrl=pipeline.created.dlq_url,
        MessageBody=ops.encode(ops.upsert("docs", "late", 1, vector(1))),
    )

    redrive(pipeline.clients.sqs, pipeline.created.queue_url)
    pipeline.drain(pipeline.compactor("a"))

    assert set(snapshot_state(reader, "docs")) == {"late"}


def test_a_queue_without_a_redrive_policy_is_a_clear_error(pipeline: Pipeline) -> None:
    url = pipeline.clients.sqs.create_queue(QueueName=f"{pipeline.names.queue}-plain")["QueueUrl"]

    with pytest.raises(CompactorError, match="no redrive policy"):
        redrive(pipeline.clients.sqs, url)


# -- the message move task, where the endpoint has one ---------------------------------------------

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/main"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/main-dlq"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:main"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:main-dlq"


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SQSClient, Stubber]]:
    """An SQS client that answers only what the test stubs, in order; any other call fails."""
    monkeypatch.setattr(redrive_module, "_TASK_POLL_S", 0.0)
    sqs = boto3.client("sqs", region_name="us-east-1")
    with Stubber(sqs) as stub:
        _stub_queue_lookup(stub)
        yield sqs, stub


def _stub_queue_lookup(stub: Stubber) -> None:
    stub.add_response(
        "get_queue_attributes",
        {
            "Attributes": {
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 3})
            }
        },
        {"QueueUrl": QUEUE_URL, "AttributeNames": ["RedrivePolicy"]},
    )
    stub.add_response(
        "get_queue_url",
        {"QueueUrl": DLQ_URL},
        {"QueueName": "main-dlq", "QueueOwnerAWSAccountId": "123456789012"},
    )
    for url, arn in ((DLQ_URL, DLQ_ARN), (QUEUE_URL, QUEUE_ARN)):
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": arn}},
            {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
        )


def _stub_task_status(stub: Stubber, status: str, **extra: Any) -> None:
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [{"TaskHandle": "task-1", "Status": status, **extra}]},
        {"SourceArn": DLQ_ARN},
    )


def test_a_move_task_is_started_and_awaited_where_the_endpoint_has_one(
    stubbed: tuple[SQSClient, Stubber],
) -> None:
    sqs, stub = stubbed
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "task-1"},
        {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN},
    )
    _stub_task_status(stub, "RUNNING", ApproximateNumberOfMessagesMoved=2)
    _stub_task_status(stub, "COMPLETED", ApproximateNumberOfMessagesMoved=7)

    assert redrive(sqs, QUEUE_URL) == 7
    stub.assert_no_pending_responses()


def test_a_failed_move_task_is_an_error_with_its_reason(
    stubbed: tuple[SQSClient, Stubber],
) -> None:
    sqs, stub = stubbed
    stub.add_response("start_message_move_task", {"TaskHandle": "task-1"})
    _stub_task_status(stub, "FAILED", FailureReason="AccessDenied on main")

    with pytest.raises(CompactorError, match="FAILED: AccessDenied on main"):
        redrive(sqs, QUEUE_URL)


def test_a_refused_move_task_is_not_papered_over_by_the_fallback(
    stubbed: tuple[SQSClient, Stubber],
) -> None:
    sqs, stub = stubbed
    stub.add_client_error(
        "start_message_move_task", service_error_code="AccessDenied", http_status_code=403
    )

    with pytest.raises(ClientError, match="AccessDenied"):
        redrive(sqs, QUEUE_URL)


def test_an_endpoint_without_move_tasks_falls_back_to_receive_and_send(
    stubbed: tuple[SQSClient, Stubber],
) -> None:
    sqs, stub = stubbed
    stub.add_client_error(
        "start_message_move_task",
        service_error_code="AWS.SimpleQueueService.UnsupportedOperation",
        http_status_code=400,
    )
    stub.add_response("receive_message", {"Messages": []})

    assert redrive(sqs, QUEUE_URL) == 0


# -- the CLI ---------------------------------------------------------------------------------------


def test_redrive_command_for_one_queue_says_how_many_it_moved(
    pipeline: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill_the_dlq(pipeline, "bad 0", "bad 1")

    assert main(["redrive", "--queue-url", pipeline.created.queue_url]) == 0

    assert f"moved 2 messages from the DLQ back to {pipeline.created.queue_url}" in (
        capsys.readouterr().out
    )
    assert pipeline.queue_depth() == (2, 0)


def test_redrive_command_without_a_dlq_is_one_line_and_exit_2(
    pipeline: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pipeline.clients.sqs.create_queue(QueueName=f"{pipeline.names.queue}-plain")["QueueUrl"]

    assert main(["redrive", "--queue-url", url]) == 2

    err = capsys.readouterr().err
    assert "no redrive policy" in err and "Traceback" not in err
