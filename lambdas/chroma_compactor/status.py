"""What an operator asks first: is every collection current, is anything stuck, is the DLQ empty."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chroma_compactor.health import HealthTable
from chroma_compactor.lease import LeaseTable
from chroma_compactor.pointer import PointerTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sqs import SQSClient
    from rich.console import Console

    from chroma_compactor.settings import Settings
    from chroma_compactor.wiring import Clients


# A lease held longer than any invocation can run (Lambda's 900 s) belongs to a stuck holder.
STUCK_LEASE_S = 1200.0
# Messages this old with no commit since they arrived: the compactor is not keeping up.
BACKLOG_S = 300.0


@dataclass(frozen=True)
class CollectionStatus:
    collection: str  # a collection, or one shard of one
    version: int
    record_count: int
    pointer_age_s: float | None
    lease_owner: str | None
    lease_expires_in_s: float | None
    lease_held_s: float | None = None
    last_failure: str | None = None  # "Kind: message" of the latest failed cycle, if any
    last_failure_age_s: float | None = None

    @property
    def failing(self) -> bool:
        """Its latest cycle failed after its latest commit (an older failure is history)."""
        if self.last_failure_age_s is None:
            return False
        return self.pointer_age_s is None or self.last_failure_age_s < self.pointer_age_s

    @property
    def lease_stuck(self) -> bool:
        return self.lease_held_s is not None and self.lease_held_s > STUCK_LEASE_S


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
    def problems(self) -> list[str]:
        """What an operator must look at, one line each; empty when all is well."""
        found = []
        for c in self.collections:
            if c.failing:
                found.append(f"{c.collection}: cycles fail: {c.last_failure}")
            if c.lease_stuck:
                found.append(
                    f"{c.collection}: lease held by {c.lease_owner} for {_age(c.lease_held_s)}, "
                    "longer than any invocation runs (stuck holder?)"
                )
        newest_commit = min(
            (c.pointer_age_s for c in self.collections if c.pointer_age_s is not None),
            default=None,
        )
        for q in self.queues:
            name = q.queue_url.rsplit("/", 1)[-1]
            if q.dlq_visible:
                found.append(f"{name}: the DLQ holds {q.dlq_visible} messages")
            if (
                q.oldest_age_s is not None
                and q.oldest_age_s > BACKLOG_S
                and (newest_commit is None or newest_commit > q.oldest_age_s)
            ):
                found.append(
                    f"{name}: the oldest message waited {_age(q.oldest_age_s)} and nothing was "
                    "committed since it arrived (is the compactor running?)"
                )
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "collections": [
                asdict(c) | {"failing": c.failing, "lease_stuck": c.lease_stuck}
                for c in self.collections
            ],
            "queues": [asdict(q) for q in self.queues],
        }


def collect_status(
    clients: Clients, settings: Settings, clock: Callable[[], float] = time.time
) -> PipelineStatus:
    pointers = PointerTable(clients.dynamodb, settings.control_table_name, clock)
    leases = LeaseTable(clients.dynamodb, settings.control_table_name, clock)
    health = HealthTable(clients.dynamodb, settings.control_table_name, clock)
    now_ms = clock() * 1000
    collections = []
    for name in pointers.collections():
        pointer = pointers.read(name)
        holder = leases.holder(name)
        held = holder.owner is not None and holder.expires_at_ms > now_ms
        failure = health.last_failure(name)
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
                lease_held_s=(now_ms - holder.acquired_at_ms) / 1000
                if held and holder.acquired_at_ms
                else None,
                last_failure=f"{failure.kind}: {failure.message}" if failure else None,
                last_failure_age_s=(now_ms - failure.at_ms) / 1000 if failure else None,
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
    for problem in status.problems:
        console.print(f"[red]problem:[/] {problem}", highlight=False)
    if any(q.dlq_visible for q in status.queues):
        console.print("DLQ: inspect the messages, fix the cause, then `chroma-compactor redrive`")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
