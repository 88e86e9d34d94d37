"""The CloudWatch dashboard of the pipeline's own EMF metrics and the AWS metrics beside them.

Metric names are the ones `lambdas/enhanced_compaction_handler.py` (`_publish`) and
`lambdas/stream_forwarder.py` emit; a test parses those files so a renamed metric fails here.
"""

from __future__ import annotations

import json

# Powertools `Metrics(namespace=..., service=...)` in the handlers: EMF namespace and the
# `service` dimension it adds to every metric.
EMF_NAMESPACE = "ChromaCompactor"
COMPACTOR_SERVICE = "compactor"
FORWARDER_SERVICE = "forwarder"

COMPACTOR_COUNTS = ("MessagesFetched", "MessagesRejected", "CyclesCommitted", "CyclesAbandoned")
COMPACTOR_OUTCOMES = ("Applied", "Coalesced", "Stale", "NotFound", "Failed")
COMPACTOR_BYTES = ("SnapshotUploadBytes", "SnapshotDownloadBytes")
# `Phase_<step>` for each step of `chroma_compactor.cycle.Step`, plus retention.
CYCLE_PHASES = (
    "lease",
    "download",
    "fetch",
    "apply",
    "validate",
    "upload",
    "commit",
    "delete",
    "release",
    "retention",
)
FORWARDER_COUNTS = ("Forwarded", "ForwardSkipped", "ForwardFailed")


def emf_metric_names() -> dict[str, set[str]]:
    """Every EMF metric the dashboard shows, per service dimension."""
    return {
        COMPACTOR_SERVICE: {
            *COMPACTOR_COUNTS,
            *COMPACTOR_OUTCOMES,
            *COMPACTOR_BYTES,
            *(f"Phase_{p}" for p in CYCLE_PHASES),
        },
        FORWARDER_SERVICE: set(FORWARDER_COUNTS),
    }


def _emf(service: str, names: tuple[str, ...] | list[str], stat: str) -> list[list[object]]:
    return [[EMF_NAMESPACE, n, "service", service, {"stat": stat, "label": n}] for n in names]


def _widget(
    title: str, metrics: list[list[object]], region: str, x: int, y: int, *, stacked: bool = False
) -> dict[str, object]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": region,
            "metrics": metrics,
            "view": "timeSeries",
            "stacked": stacked,
            "period": 300,
        },
    }


def dashboard_body(
    *, region: str, queue_name: str, dlq_name: str, compactor_name: str, forwarder_name: str
) -> str:
    phases = [f"Phase_{p}" for p in CYCLE_PHASES]
    widgets = [
        _widget(
            "Compactor: messages and cycles",
            _emf(COMPACTOR_SERVICE, COMPACTOR_COUNTS, "Sum"),
            region,
            0,
            0,
        ),
        _widget(
            "Compactor: applied / coalesced / stale / not found / failed",
            _emf(COMPACTOR_SERVICE, COMPACTOR_OUTCOMES, "Sum"),
            region,
            12,
            0,
            stacked=True,
        ),
        _widget(
            "Compactor: cycle phases (ms, p90)",
            _emf(COMPACTOR_SERVICE, phases, "p90"),
            region,
            0,
            6,
            stacked=True,
        ),
        _widget(
            "Compactor: snapshot bytes",
            _emf(COMPACTOR_SERVICE, COMPACTOR_BYTES, "Sum"),
            region,
            12,
            6,
        ),
        _widget(
            "Forwarder: records",
            _emf(FORWARDER_SERVICE, FORWARDER_COUNTS, "Sum"),
            region,
            0,
            12,
        ),
        _widget(
            "Queues: depth and age",
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue_name],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue_name],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq_name],
            ],
            region,
            12,
            12,
        ),
        _widget(
            "Functions: errors, throttles, duration",
            [
                ["AWS/Lambda", "Errors", "FunctionName", compactor_name, {"stat": "Sum"}],
                ["AWS/Lambda", "Throttles", "FunctionName", compactor_name, {"stat": "Sum"}],
                ["AWS/Lambda", "Errors", "FunctionName", forwarder_name, {"stat": "Sum"}],
                ["AWS/Lambda", "IteratorAge", "FunctionName", forwarder_name, {"stat": "Maximum"}],
            ],
            region,
            0,
            18,
        ),
    ]
    return json.dumps({"widgets": widgets})
