"""Stand-ins for Lambda's two event source mappings, calling the real handlers in-process.

They honour what the Pulumi program deploys, read from the same settings: the stream batch size,
the compactor's batch size and batching window, and the compactor's reserved concurrency (one
per shard group: that many threads per queue, so the shards of a FIFO queue compact in parallel).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chroma_compactor.resources import COMPACTOR_TIMEOUT_S

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.settings import Settings
    from chroma_compactor.wiring import Clients

log = logging.getLogger(__name__)

LAMBDA_LOGGERS = ("chroma-compactor", "chroma-compactor-forwarder")
_IDLE_SLEEP_S = 0.2
_STREAM_RETRIES = 3


@dataclass
class LambdaContext:
    """The part of Lambda's context object the handlers use."""

    function_name: str
    timeout_s: float = COMPACTOR_TIMEOUT_S
    memory_limit_in_mb: int = 2048
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    invoked_function_arn: str = ""
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return int((self.timeout_s - (time.monotonic() - self._started)) * 1000)


def quiet_lambda_logs(log_dir: Path) -> None:
    """Send the handlers' JSON logs and EMF metrics to files, as CloudWatch would hold them.

    The console stays readable; ``<data-dir>/logs/`` has every cycle's structured line and
    metrics. (Powertools' own switch, POWERTOOLS_METRICS_DISABLED, is no use here: disabled
    metrics are never cleared, pile up, and are printed anyway once 100 values accumulate.)
    """
    import builtins
    import functools

    from aws_lambda_powertools.metrics.provider.cloudwatch_emf import cloudwatch

    import enhanced_compaction_handler  # noqa: F401 - creates the loggers
    import stream_forwarder  # noqa: F401

    log_dir.mkdir(parents=True, exist_ok=True)
    for name in LAMBDA_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                handler.setStream((log_dir / f"{name}.log").open("a", encoding="utf-8"))
    emf = (log_dir / "metrics.emf.log").open("a", encoding="utf-8")
    # Powertools prints EMF with the builtin print; give its module a print of its own.
    cloudwatch.print = functools.partial(builtins.print, file=emf, flush=True)  # type: ignore[attr-defined]


class Pollers:
    """Both mappings for one pipeline, each on its own thread until ``stop``."""

    def __init__(self, settings: Settings, clients: Clients | None = None) -> None:
        from chroma_compactor.wiring import Clients

        self.settings = settings
        self.clients = clients or Clients.create()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._stream_loop, name="stream-poller", daemon=True),
            *(
                threading.Thread(
                    target=self._queue_loop, args=(url,), name=f"queue-poller-{i}-{j}", daemon=True
                )
                for i, url in enumerate(settings.queue_urls())
                for j in range(settings.compactor_concurrency)
            ),
        ]
        self.invocations = 0
        self.errors = 0

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=COMPACTOR_TIMEOUT_S)

    # -- stream -> forwarder --------------------------------------------------------------------

    def _stream_loop(self) -> None:
        import stream_forwarder
        from chroma_compactor.stream_checkpoint import StreamCursor, pump

        cursor = StreamCursor(self.clients, self.settings)
        attempts: dict[str, int] = {}

        def invoke(batch: list[dict[str, Any]]) -> list[str]:
            response = stream_forwarder.handler({"Records": batch}, LambdaContext("forwarder"))
            failed = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
            # After its retries the mapping hands a record to the on-failure destination.
            for seq in failed:
                attempts[seq] = attempts.get(seq, 0) + 1
            given_up = [s for s in failed if attempts[s] > _STREAM_RETRIES]
            for seq in given_up:
                log.error("stream record %s dropped to the on-failure log after retries", seq)
            return [s for s in failed if s not in given_up]

        while not self._stop.is_set():
            try:
                handled, _ = pump(cursor, self.settings.stream_batch_size, invoke)
            except (ClientError, BotoCoreError) as e:
                log.warning("stream poller: %s", e)
                handled = 0
            if not handled:
                self._stop.wait(_IDLE_SLEEP_S)

    # -- queue -> compactor ---------------------------------------------------------------------

    def _queue_loop(self, queue_url: str) -> None:
        import enhanced_compaction_handler

        arn = self.clients.sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        while not self._stop.is_set():
            try:
                records = self._gather(queue_url, arn)
            except (ClientError, BotoCoreError) as e:
                log.warning("queue poller: %s", e)
                records = []
            if not records:
                self._stop.wait(_IDLE_SLEEP_S)
                continue
            self.invocations += 1
            try:
                enhanced_compaction_handler.handler(
                    {"Records": records},
                    LambdaContext("compactor"),
                )
            except Exception:
                # As in Lambda: a failed invocation leaves its messages to the visibility timeout.
                self.errors += 1
                log.exception("compaction handler failed")

    def _gather(self, queue_url: str, arn: str) -> list[dict[str, Any]]:
        """Receive like the mapping: up to the batch size, waiting at most the batching window."""
        records: list[dict[str, Any]] = []
        window_ends: float | None = None
        while len(records) < self.settings.batch_size and not self._stop.is_set():
            got = self.clients.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, self.settings.batch_size - len(records)),
                # No long polling: moto rescans the whole queue every 10 ms while it waits,
                # which starves everything else in this process. Short polls plus a sleep.
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            records.extend(_sqs_record(m, arn) for m in got)
            if records and window_ends is None:
                window_ends = time.monotonic() + self.settings.batching_window
            if window_ends is None or time.monotonic() >= window_ends:
                break
            if not got:
                time.sleep(min(0.1, max(0.0, window_ends - time.monotonic())))
        return records


def _sqs_record(message: Any, arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": arn.split(":")[3],
    }
