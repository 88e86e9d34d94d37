"""The compaction queue as the cycle sees it: fetch more, delete after commit, release on abandon."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_SQS_BATCH = 10  # ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch limit
_RECEIVERS = 16  # concurrent receives and deletes (the clients' pool holds 32 connections)


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    queue_url: str
    receive_count: int = 1
    from_event: bool = False  # delivered in the Lambda event (vs fetched greedily)


def queue_url_from_arn(sqs: SQSClient, arn: str) -> str:
    """``arn:aws:sqs:<region>:<account>:<name>`` -> the queue URL, as the endpoint names it."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    return sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


class WorkQueue:
    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self.url = queue_url

    def fetch_more(
        self, max_count: int, seconds: float, visibility_seconds: int
    ) -> list[QueueMessage]:
        """Receive up to ``max_count`` messages within ``seconds``, invisible for the cycle.

        Several receivers run at once (a receive is a round trip: one at a time caps a cycle at
        ~10 messages per round trip). Each stops at its first empty receive: a drained queue
        should not cost the cycle its budget.
        """
        fetched: list[QueueMessage] = []
        lock = threading.Lock()
        deadline = time.monotonic() + seconds
        claimed = 0  # messages asked for, so receivers together never exceed max_count

        def receive() -> None:
            nonlocal claimed
            while time.monotonic() < deadline:
                with lock:
                    want = min(_SQS_BATCH, max_count - claimed)
                    claimed += max(want, 0)
                if want <= 0:
                    return
                out = self._sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=want,
                    VisibilityTimeout=visibility_seconds,
                    WaitTimeSeconds=0,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
                messages = out.get("Messages", [])
                with lock:
                    claimed -= want - len(messages)
                    fetched.extend(self._message(m) for m in messages)
                if not messages:
                    return

        if seconds > 0 and max_count > 0:
            with ThreadPoolExecutor(_RECEIVERS) as pool:
                for future in [pool.submit(receive) for _ in range(_RECEIVERS)]:
                    future.result()
        return fetched

    def _message(self, m: Any) -> QueueMessage:
        return QueueMessage(
            message_id=m["MessageId"],
            receipt_handle=m["ReceiptHandle"],
            body=m["Body"],
            queue_url=self.url,
            receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
        )

    def delete(self, messages: list[QueueMessage]) -> int:
        """Delete after commit; returns how many SQS refused (they come back and are stale)."""

        def delete_batch(batch: list[QueueMessage]) -> int:
            out = self._sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)
                ],
            )
            return len(out.get("Failed", []))

        with ThreadPoolExecutor(_RECEIVERS) as pool:
            return sum(pool.map(delete_batch, _chunks(messages)))

    def release(self, messages: list[QueueMessage]) -> None:
        """Make messages visible again at once, so an abandoned cycle's work is retried now.

        (Also the way around a moto bug: an expired FIFO visibility timeout redelivers only the
        last in-flight message of a group, while ChangeMessageVisibility(0) redelivers all.)
        """
        for batch in _chunks(messages):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                    for i, m in enumerate(batch)
                ],
            )


def _chunks(messages: list[QueueMessage]) -> list[list[QueueMessage]]:
    return [messages[i : i + _SQS_BATCH] for i in range(0, len(messages), _SQS_BATCH)]
