"""Reset a pipeline to empty, and optionally rebuild every collection from the source table.

The table is the source of truth and snapshots are derived from it, so a reset loses nothing
that a re-ingest cannot rebuild; messages still queued are dropped, which is why the plan says
how many there are before anything is deleted.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chroma_compactor.errors import CompactorError, ConfigurationError
from chroma_compactor.status import dead_letter_queue

if TYPE_CHECKING:
    from chroma_compactor.settings import Settings
    from chroma_compactor.wiring import Clients

_DELETE_ATTEMPTS = 8


@dataclass
class ResetPlan:
    queues: dict[str, int] = field(default_factory=dict)  # url -> messages (visible + in flight)
    control_keys: list[str] = field(default_factory=list)
    snapshot_objects: int = 0
    bucket: str = ""
    prefix: str = ""

    def describe(self) -> str:
        lines = ["A reset deletes:"]
        for url, depth in self.queues.items():
            lines.append(f"  {depth:>8} messages in {url}")
        kinds: dict[str, int] = defaultdict(int)
        for key in self.control_keys:
            kinds[key.split("#", 1)[0]] += 1
        for kind, n in sorted(kinds.items()):
            lines.append(f"  {n:>8} {kind} items in the control table")
        lines.append(
            f"  {self.snapshot_objects:>8} snapshot objects under s3://{self.bucket}/{self.prefix}/"
        )
        return "\n".join(lines)


def plan_reset(clients: Clients, settings: Settings) -> ResetPlan:
    plan = ResetPlan(bucket=settings.snapshot_bucket, prefix=settings.snapshot_prefix)
    for url in settings.queue_urls():
        for q in (url, dead_letter_queue(clients.sqs, url)):
            if q:
                attrs = clients.sqs.get_queue_attributes(
                    QueueUrl=q,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )["Attributes"]
                plan.queues[q] = sum(int(v) for v in attrs.values())
    for page in clients.dynamodb.get_paginator("scan").paginate(
        TableName=settings.control_table_name, ProjectionExpression="pk"
    ):
        plan.control_keys.extend(item["pk"]["S"] for item in page.get("Items", []))
    plan.snapshot_objects = sum(1 for _ in _snapshot_keys(clients, settings))
    return plan


def execute_reset(clients: Clients, settings: Settings, plan: ResetPlan) -> None:
    for url in plan.queues:
        _purge(clients, url)
    for start in range(0, len(plan.control_keys), 25):
        requests: Any = {
            settings.control_table_name: [
                {"DeleteRequest": {"Key": {"pk": {"S": key}}}}
                for key in plan.control_keys[start : start + 25]
            ]
        }
        for attempt in range(_DELETE_ATTEMPTS):
            requests = clients.dynamodb.batch_write_item(RequestItems=requests).get(
                "UnprocessedItems"
            )
            if not requests:
                break
            time.sleep(min(2.0, 0.05 * 2**attempt))  # throttled: back off, send the rest again
        else:
            raise CompactorError(
                f"control table {settings.control_table_name} kept throttling the reset; "
                "run it again (it deletes whatever is left)"
            )
    keys = [{"Key": k} for k in _snapshot_keys(clients, settings)]
    for start in range(0, len(keys), 1000):
        clients.s3.delete_objects(
            Bucket=settings.snapshot_bucket,
            Delete={"Objects": keys[start : start + 1000], "Quiet": True},  # type: ignore[typeddict-item]
        )


def reingest(clients: Clients, settings: Settings, segments: int = 4) -> dict[str, int]:
    """Rebuild every collection from a scan of the source table; returns collection -> version.

    The same scan and build as ``rebuild`` (see rebuild.py); after a reset each partition's
    pointer starts again, so every rebuilt partition is version 1.
    """
    from chroma_compactor.rebuild import rebuild_all
    from chroma_compactor.wiring import build_compactor

    if not settings.source_table_name:
        raise ConfigurationError("SOURCE_TABLE_NAME is not set: nothing to re-ingest from")
    results = rebuild_all(build_compactor(settings, clients), clients.dynamodb, segments)
    return {r.collection: max(r.versions.values(), default=0) for r in results}


def _purge(clients: Clients, url: str) -> None:
    try:
        clients.sqs.purge_queue(QueueUrl=url)
        return
    except ClientError as e:
        # SQS allows one purge per queue per 60 s; fall back to deleting what is visible.
        if e.response["Error"]["Code"] not in (
            "AWS.SimpleQueueService.PurgeQueueInProgress",
            "PurgeQueueInProgress",
        ):
            raise
    while got := clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        clients.sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )


def _snapshot_keys(clients: Clients, settings: Settings) -> list[str]:
    prefix = f"{settings.snapshot_prefix.strip('/')}/" if settings.snapshot_prefix else ""
    keys: list[str] = []
    for page in clients.s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.snapshot_bucket, Prefix=prefix
    ):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys
