"""A network model for the benchmark: what AWS requests would cost from a Lambda in-region.

moto answers from memory in microseconds, which would make moving a whole snapshot look free.
S3 from Lambda is neither: each request pays a first-byte latency, and its bytes cross one link
that all of the function's streams share (concurrent transfers split it, they do not multiply
it). SQS and DynamoDB requests pay a latency only. Hooked into botocore's event system on the
real clients; it sleeps what the request would have cost and counts requests and bytes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NetworkModel:
    latency_s: float = 0.025  # time to first byte of an S3 request from Lambda, same region
    bandwidth_bytes_per_s: float = 90e6  # the function's link to S3, shared by its streams

    def cost(self, nbytes: int) -> float:
        return self.latency_s + nbytes / self.bandwidth_bytes_per_s


@dataclass
class S3Traffic:
    """What crossed the modelled network."""

    model: NetworkModel
    requests: int = 0
    puts: int = 0  # PUT/POST/DELETE: priced as S3's tier-1 requests
    bytes_up: int = 0
    bytes_down: int = 0
    slept_s: float = 0.0  # the modelled cost, summed over requests (concurrent ones overlap)
    _link_free_at: float = 0.0  # when the shared link has carried every byte booked so far
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self, s3: Any) -> None:
        s3.meta.events.register("before-send.s3", self._before_send)
        s3.meta.events.register("after-call.s3", self._after_call)

    def snapshot(self) -> tuple[int, int, int, int]:
        with self._lock:
            return self.requests, self.puts, self.bytes_up, self.bytes_down

    def _before_send(self, request: Any, **_: Any) -> None:
        body = request.body
        size = (
            len(body)
            if isinstance(body, bytes | bytearray)
            else int(request.headers.get("Content-Length", 0) or 0)
        )
        with self._lock:
            self.requests += 1
            self.puts += request.method not in {"GET", "HEAD"}
            self.bytes_up += size
            self.slept_s += self.model.latency_s
        time.sleep(self.model.latency_s)
        self._carry(size)

    def _after_call(self, http_response: Any, **_: Any) -> None:
        size = int(http_response.headers.get("Content-Length", 0) or 0)
        with self._lock:
            self.bytes_down += size
        self._carry(size)

    def _carry(self, nbytes: int) -> None:
        """Book ``nbytes`` on the shared link after what is already booked; wait until done."""
        if not nbytes:
            return
        seconds = nbytes / self.model.bandwidth_bytes_per_s
        with self._lock:
            done = max(time.monotonic(), self._link_free_at) + seconds
            self._link_free_at = done
            self.slept_s += seconds
        time.sleep(max(0.0, done - time.monotonic()))


@dataclass
class RequestLatency:
    """A fixed latency per request (SQS, DynamoDB: small bodies, latency-bound)."""

    latency_s: float
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}", self._before_send)

    def _before_send(self, **_: Any) -> None:
        with self._lock:
            self.requests += 1
        time.sleep(self.latency_s)
