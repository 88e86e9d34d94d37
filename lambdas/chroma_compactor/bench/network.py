"""A network model for S3: each request costs a first-byte latency plus its bytes over a bandwidth.

moto answers from memory in microseconds, which would make moving a whole snapshot look free.
Lambda-to-S3 in one region is neither: the model sleeps what the request would have cost and
counts requests and bytes, hooked into botocore's event system on the real client.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NetworkModel:
    latency_s: float = 0.025  # time to first byte of an S3 request from Lambda, same region
    bandwidth_bytes_per_s: float = 90e6  # one stream's throughput, Lambda <-> S3

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
    slept_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self, s3: Any) -> None:
        s3.meta.events.register("before-send.s3", self._before_send)
        s3.meta.events.register("after-call.s3", self._after_call)

    def snapshot(self) -> tuple[int, int, int, int]:
        with self._lock:
            return self.requests, self.puts, self.bytes_up, self.bytes_down

    def _before_send(self, request: Any, **_: Any) -> None:
        if request.method not in {"GET", "HEAD"}:
            with self._lock:
                self.puts += 1
        body = request.body
        size = (
            len(body)
            if isinstance(body, bytes | bytearray)
            else int(request.headers.get("Content-Length", 0) or 0)
        )
        self._pay(size, up=True)

    def _after_call(self, http_response: Any, **_: Any) -> None:
        size = int(http_response.headers.get("Content-Length", 0) or 0)
        self._pay(size, up=False, latency=False)

    def _pay(self, nbytes: int, up: bool, latency: bool = True) -> None:
        delay = (
            self.model.latency_s if latency else 0.0
        ) + nbytes / self.model.bandwidth_bytes_per_s
        with self._lock:
            if latency:
                self.requests += 1
            if up:
                self.bytes_up += nbytes
            else:
                self.bytes_down += nbytes
            self.slept_s += delay
        time.sleep(delay)
