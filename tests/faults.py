"""Faults the tests inject: crashes and interleavings at a step, and AWS errors on the wire.

Nothing here reaches into the compactor: steps are entered through its ``Hooks`` seam, and AWS
errors are injected with botocore's own event system on the real clients, in front of moto.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber

from chroma_compactor.cycle import Hooks, Step

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from botocore.awsrequest import AWSPreparedRequest


class SimulatedCrash(BaseException):
    """A process dying mid-step: no ``except Exception`` of the compactor may clean up for it."""


class At(Hooks):
    """Run ``action`` once, just before ``step``."""

    def __init__(self, step: Step | None, action: Callable[[], None]) -> None:
        self.step, self.action, self.fired = step, action, False

    def before(self, step: Step, collection: str) -> None:
        if step is self.step and not self.fired:
            self.fired = True
            self.action()


def crash() -> None:
    raise SimulatedCrash


class InFlight:
    """Remembers every message received through a client, to end their invisibility on demand.

    A crashed invocation's messages (its event's and those it fetched greedily) stay invisible
    until their visibility timeout, which moto counts in real seconds. Tests stand for that
    wait by making them visible at once, as SQS would after the timeout.
    """

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs, self._url = sqs, queue_url
        self._handles: list[str] = []
        sqs.meta.events.register("after-call.sqs.ReceiveMessage", self._record)

    def _record(self, parsed: dict[str, Any], **_: Any) -> None:
        self._handles += [m["ReceiptHandle"] for m in parsed.get("Messages", [])]

    def forget(self) -> None:
        self._handles = []

    def expire(self) -> None:
        """Every message received so far and not yet deleted becomes visible again."""
        handles, self._handles = self._handles, []
        for handle in handles:
            # A handle that fails was deleted, or received again since: it hides nothing.
            with suppress(ClientError):
                self._sqs.change_message_visibility(
                    QueueUrl=self._url, ReceiptHandle=handle, VisibilityTimeout=0
                )


@dataclass
class FlakyAws:
    """Fails a fraction of S3 and DynamoDB requests the way AWS does, before moto sees them.

    Kinds: ``throttle`` (DynamoDB ThrottlingException, S3 503 SlowDown), ``server-error`` (500),
    and ``lost-response``: moto executes the request, then the caller gets a 500, so a retry
    repeats a write that already happened. botocore's retry mode handles most of these; a
    request that fails every attempt surfaces to the compactor as a ClientError.
    """

    rate: float = 0.0
    seed: int = 0
    enabled: bool = True
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def attach(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register_first("before-send", self._before_send)

    def reseed(self, rate: float, seed: int) -> None:
        self.rate, self._rng = rate, random.Random(seed)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The test's own reads and checks see AWS as it is."""
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    def take_injected(self) -> Counter[str]:
        injected, self.injected = self.injected, Counter()
        return injected

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if not self.enabled or self._rng.random() >= self.rate:
            return None
        kind = self._rng.choice(["throttle", "server-error", "lost-response"])
        self.injected[kind] += 1
        return fault(kind, request)


class FirstRequestsFail:
    """The first ``count`` requests through the attached clients fail as ``kind``: FlakyAws made
    deterministic, for a test that needs an exact number of failures."""

    def __init__(self, kind: str, count: int) -> None:
        self.kind, self.count, self.injected = kind, count, 0
        self._lock = threading.Lock()  # requests may come from several threads

    def attach(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register_first("before-send", self._before_send)

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        with self._lock:
            if self.injected >= self.count:
                return None
            self.injected += 1
        return fault(self.kind, request)


def fault(kind: str, request: AWSPreparedRequest) -> AWSResponse:
    """The response AWS gives for a ``throttle``, a ``server-error``, or a ``lost-response`` (the
    request is executed, then the caller sees a 500)."""
    dynamodb = "X-Amz-Target" in request.headers and b"DynamoDB" in _header(request)
    if kind == "lost-response":
        botocore_stubber("before-send", request)
    if kind == "throttle" and dynamodb:
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'
        return _response(request, 400, body, "application/x-amz-json-1.0")
    if kind == "throttle":
        body = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
        return _response(request, 503, body, "application/xml")
    return _response(request, 500, b"", "text/plain")


def _header(request: AWSPreparedRequest) -> bytes:
    value = request.headers["X-Amz-Target"]
    return value if isinstance(value, bytes) else str(value).encode()


def _response(request: AWSPreparedRequest, status: int, body: bytes, ctype: str) -> AWSResponse:
    return AWSResponse(request.url, status, {"Content-Type": ctype}, MockRawResponse(body))  # type: ignore[arg-type]
