"""What an operator asks first: is every collection current, is anything stuck, is the DLQ empty."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chroma_compactor.lease import LeaseTable
from chroma_compactor.pointer import PointerTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sqs import SQSClient
    from rich.console import Console

    from chroma_compactor.settings import Settings
    from chroma_compactor.wiring import Clients


@dataclass(frozen=True)
class CollectionStatus:
    collection: str
    version: int
    record_count: int
    pointer_age_s: float | None
    lease_owner: str | None
    lease_expires_in_s: float | None


@dataclass(frozen=True)
class QueueStatus:
    queue_url: str
    visible: int
    in_flight: int
    dlq_url: str | None
    dlq_visible: int
    oldest_age_s: float | None  # CloudWatch's ApproximateAgeOfOldestMessage, when it has one


@dataclass(frozen=True)
class PipelineStatus:
    collections: list[CollectionStatus]
    queues: list[QueueStatus]

    @property
    def healthy(self) -> bool:
        return not any(q.dlq_visible for q in self.queues)

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "collections": [asdict(c) for c in self.collections],
            "queues": [asdict(q) for q in self.queues],
        }


def collect_status(
    clients: Clients, settings: Settings, clock: Callable[[], float] = time.time
) -> PipelineStatus:
    pointers = PointerTable(clients.dynamodb, settings.control_table_name, clock)
    leases = LeaseTable(clients.dynamodb, settings.control_table_name, clock)
    now_ms = clock() * 1000
    collections = []
    for name in pointers.collections():
        pointer = pointers.read(name)
        holder = leases.holder(name)
        held = holder.owner is not None and holder.expires_at_ms > now_ms
        collections.append(
            CollectionStatus(
                collection=name,
                version=pointer.version,
                record_count=pointer.record_count,
                pointer_age_s=(now_ms - pointer.updated_at_ms) / 1000
                if pointer.updated_at_ms
                else None,
                lease_owner=holder.owner if held else None,
                lease_expires_in_s=(holder.expires_at_ms - now_ms) / 1000 if held else None,
            )
        )
    queues = [_queue_status(clients, url) for url in settings.queue_urls()]
    return PipelineStatus(collections, queues)


def dead_letter_queue(sqs: SQSClient, queue_url: str) -> str | None:
    """The DLQ named by a queue's redrive policy, if it has one."""
    import json

    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attrs.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    arn = json.loads(policy)["deadLetterTargetArn"]
    _, _, _, _, account, name = arn.split(":")
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def _queue_status(clients: Clients, url: str) -> QueueStatus:
    counts = _depth(clients.sqs, url)
    dlq = dead_letter_queue(clients.sqs, url)
    return QueueStatus(
        queue_url=url,
        visible=counts[0],
        in_flight=counts[1],
        dlq_url=dlq,
        dlq_visible=sum(_depth(clients.sqs, dlq)) if dlq else 0,
        oldest_age_s=_oldest_age(clients, url),
    )


def _depth(sqs: SQSClient, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _oldest_age(clients: Clients, url: str) -> float | None:
    """From CloudWatch, never by peeking: a peek would spend a receive count toward the DLQ."""
    end = datetime.now(UTC)
    points = clients.cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": url.rsplit("/", 1)[-1]}],
        StartTime=end - timedelta(minutes=5),
        EndTime=end,
        Period=60,
        Statistics=["Maximum"],
    ).get("Datapoints", [])
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def render_status(status: PipelineStatus, console: Console) -> None:
    from rich.table import Table

    collections = Table(title="Collections")
    for column in ("collection", "version", "records", "pointer age", "lease"):
        collections.add_column(column)
    for c in status.collections:
        lease = f"{c.lease_owner} ({_age(c.lease_expires_in_s)} left)" if c.lease_owner else "free"
        collections.add_row(
            c.collection, str(c.version), str(c.record_count), _age(c.pointer_age_s), lease
        )
    if not status.collections:
        collections.add_row("(none yet)", "", "", "", "")
    console.print(collections)
    queues = Table(title="Queues")
    for column in ("queue", "visible", "in flight", "oldest", "DLQ"):
        queues.add_column(column)
    for q in status.queues:
        dlq = f"[red]{q.dlq_visible}[/]" if q.dlq_visible else "0"
        queues.add_row(
            q.queue_url.rsplit("/", 1)[-1],
            str(q.visible),
            str(q.in_flight),
            _age(q.oldest_age_s),
            dlq,
        )
    console.print(queues)
    if not status.healthy:
        console.print(
            "[red]the DLQ holds messages:[/] inspect them, fix the cause, then `chroma-compactor redrive`"
        )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
