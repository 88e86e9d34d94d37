"""Stream forwarder Lambda: DynamoDB stream records in, compaction messages on SQS out."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from chroma_compactor.forwarder import forward
from chroma_compactor.settings import Settings
from chroma_compactor.wiring import Clients

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="chroma-compactor-forwarder")
metrics = Metrics(namespace="ChromaCompactor", service="forwarder")


@cache
def _setup() -> tuple[Settings, Clients]:
    return Settings.from_env(), Clients.create()


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings, clients = _setup()
    result = forward(clients.sqs, settings, event.get("Records", []))
    metrics.add_metric(name="Forwarded", unit=MetricUnit.Count, value=result.sent)
    metrics.add_metric(name="ForwardSkipped", unit=MetricUnit.Count, value=result.skipped)
    metrics.add_metric(
        name="ForwardFailed", unit=MetricUnit.Count, value=len(result.failed_sequence_numbers)
    )
    logger.info(
        "forwarded",
        extra={
            "sent": result.sent,
            "skipped": result.skipped,
            "failed": len(result.failed_sequence_numbers),
        },
    )
    return result.batch_item_failures()
