"""Move DLQ messages back to their main queue once the cause of their failure is fixed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chroma_compactor.errors import CompactorError
from chroma_compactor.status import dead_letter_queue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_TASK_POLL_S = 1.0
_TASK_TIMEOUT_S = 900.0
# What an endpoint without message move tasks answers.
_NO_MOVE_TASKS = (
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAction",
    "NotImplemented",
)


def redrive(sqs: SQSClient, queue_url: str) -> int:
    """Move every DLQ message back; returns how many moved.

    Uses SQS's message move task where the endpoint has it, else receive -> send -> delete,
    deleting from the DLQ only what the main queue accepted.
    """
    dlq_url = dead_letter_queue(sqs, queue_url)
    if dlq_url is None:
        raise CompactorError(f"{queue_url} has no redrive policy, so no DLQ to redrive from")
    try:
        return _move_task(sqs, _arn(sqs, dlq_url), _arn(sqs, queue_url))
    except NotImplementedError:
        pass  # moto 5.2.5 (local mode) has no message move tasks
    except ClientError as e:
        # moto's server answers 500 for the missing action; receive/send is correct anywhere.
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if e.response["Error"]["Code"] not in _NO_MOVE_TASKS and status < 500:
            raise
    return _receive_and_send(sqs, dlq_url, queue_url)


def _move_task(sqs: SQSClient, source_arn: str, destination_arn: str) -> int:
    handle = sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=destination_arn)[
        "TaskHandle"
    ]
    deadline = time.monotonic() + _TASK_TIMEOUT_S
    while time.monotonic() < deadline:
        for task in sqs.list_message_move_tasks(SourceArn=source_arn).get("Results", []):
            if task.get("TaskHandle") == handle and task.get("Status") in (
                "COMPLETED",
                "FAILED",
                "CANCELLED",
            ):
                if task["Status"] != "COMPLETED":
                    raise CompactorError(
                        f"message move task {task['Status']}: {task.get('FailureReason', '')}"
                    )
                return int(task.get("ApproximateNumberOfMessagesMoved", 0))
        time.sleep(_TASK_POLL_S)
    raise CompactorError(f"message move task {handle} did not finish in {_TASK_TIMEOUT_S:.0f}s")


def _receive_and_send(sqs: SQSClient, dlq_url: str, queue_url: str) -> int:
    fifo = queue_url.endswith(".fifo")
    moved = 0
    while True:
        got = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=["MessageGroupId"],
        ).get("Messages", [])
        if not got:
            return moved
        entries: list[Any] = []
        for i, m in enumerate(got):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": m["Body"]}
            if fifo:
                entry["MessageGroupId"] = m.get("Attributes", {}).get("MessageGroupId", "redrive")
                entry["MessageDeduplicationId"] = f"redrive-{m['MessageId']}"
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        ok = {s["Id"] for s in sent.get("Successful", [])}
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(got)
            if str(i) in ok
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=done)  # type: ignore[arg-type]
        moved += len(done)
        if len(done) < len(got):
            failed = sent.get("Failed", [])
            raise CompactorError(f"moved {moved}; SQS refused {len(failed)}: {failed[:1]}")


def _arn(sqs: SQSClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
