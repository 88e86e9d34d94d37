"""Compaction Lambda: an SQS event in, one compaction cycle, failed message ids out."""

from __future__ import annotations

import itertools
import threading
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from chroma_compactor.cycle import CycleReport, run_cycle
from chroma_compactor.queue import QueueMessage, queue_url_from_arn
from chroma_compactor.settings import Settings
from chroma_compactor.wiring import Clients, build_compactor

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from chroma_compactor.cycle import Compactor

logger = Logger(service="chroma-compactor")
metrics = Metrics(namespace="ChromaCompactor", service="compactor")

# Seconds kept back from Lambda's timeout for the handler's own bookkeeping.
_SAFETY_S = 10.0


_containers = itertools.count()
_this_thread = threading.local()


def _container() -> int:
    """0 in Lambda (one invocation per container at a time); local mode's concurrent pollers
    call the handler from several threads, each of which must be a container of its own."""
    if not hasattr(_this_thread, "container"):
        _this_thread.container = next(_containers)
    return int(_this_thread.container)


@cache
def _compactor(container: int = 0) -> Compactor:
    """One per container: its own lease owner (leases are re-entrant per owner) and working
    copies (``CACHE_DIR``, with ``-<n>`` for the n-th extra local-mode container)."""
    settings = Settings.from_env()
    if container:
        settings = settings.model_copy(update={"cache_dir": f"{settings.cache_dir}-{container}"})
    return build_compactor(settings, Clients.create())


@cache
def _queue_url(arn: str) -> str:
    return queue_url_from_arn(_compactor().sqs, arn)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    sqs_event = SQSEvent(event)
    records = list(sqs_event.records)
    if not records:
        return {"batchItemFailures": []}
    queue_url = _queue_url(records[0].event_source_arn)
    messages = [
        QueueMessage(
            message_id=r.message_id,
            receipt_handle=r.receipt_handle,
            body=r.body,
            queue_url=queue_url,
            receive_count=int(r.attributes.approximate_receive_count),
            from_event=True,
        )
        for r in records
    ]
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - _SAFETY_S
    report = run_cycle(_compactor(_container()), messages, queue_url, deadline)
    _publish(report)
    return report.batch_item_failures()


def _publish(report: CycleReport) -> None:
    metrics.add_metric(name="MessagesFetched", unit=MetricUnit.Count, value=report.fetched)
    metrics.add_metric(name="MessagesRejected", unit=MetricUnit.Count, value=report.rejected)
    for o in report.outcomes:
        for name, value in (
            ("Applied", o.applied),
            ("Coalesced", o.coalesced),
            ("Stale", o.stale),
            ("NotFound", o.not_found),
            ("Failed", o.failed),
        ):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        metrics.add_metric(
            name="CyclesCommitted",
            unit=MetricUnit.Count,
            value=int(o.committed_version is not None),
        )
        metrics.add_metric(
            name="CyclesAbandoned", unit=MetricUnit.Count, value=int(o.abandoned is not None)
        )
        metrics.add_metric(name="SnapshotUploadBytes", unit=MetricUnit.Bytes, value=o.upload_bytes)
        metrics.add_metric(
            name="SnapshotDownloadBytes", unit=MetricUnit.Bytes, value=o.download_bytes
        )
        for phase, ms in o.phases_ms.items():
            metrics.add_metric(name=f"Phase_{phase}", unit=MetricUnit.Milliseconds, value=ms)
        logger.info(
            "cycle finished",
            extra={
                "collection": o.collection,
                "committed_version": o.committed_version,
                "abandoned": o.abandoned,
                "messages": o.messages,
                "applied": o.applied,
                "coalesced": o.coalesced,
                "stale": o.stale,
                "not_found": o.not_found,
                "failed": o.failed,
                "records": o.records,
                "upload_bytes": o.upload_bytes,
                "download_bytes": o.download_bytes,
                "phases_ms": o.phases_ms,
            },
        )
    logger.info(
        "invocation finished",
        extra={
            "fetched": report.fetched,
            "rejected": report.rejected,
            "batch_item_failures": len(report.failed_event_ids),
        },
    )
