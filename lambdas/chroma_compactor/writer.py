"""The writer client: how a user's service writes records to the source table.

    with Writer("my-vectors", "docs") as w:
        w.upsert("a1", embedding, document="…", metadata={"lang": "en"})
        w.update("a1", metadata={"lang": "fr"})
        w.delete("a2")

Writes are queued in a bounded buffer and written in the background by one thread, batched by
size (BatchWriteItem, 25 items) and by age (``max_delay_s``). A full buffer blocks the caller or
raises ``WriterFull`` (``on_full``). Throttling is retried by botocore's retry mode; items that
DynamoDB leaves unprocessed are retried with jittered exponential backoff; a write that still
fails goes to ``on_failure`` (and the stats), never silently away.

**Revs.** Every write carries ``rev`` from a hybrid logical clock: ``max(now_µs << 8, last + 1)``
per writer. Revs therefore follow wall-clock order across writers and processes, and a record
re-created after a delete gets a rev above the deleted one's (which the compactor keeps as a
tombstone), so it is never mistaken for a stale write. Limits: two writers writing the same id
within their clock skew are ordered by their clocks, not by real time; and a re-create must come
later than the delete by more than the skew between the two writers' clocks (NTP keeps both
within milliseconds). Within one writer, order is exact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from botocore.exceptions import ClientError

from chroma_compactor.errors import CompactorError
from chroma_compactor.ops import MAX_DOCUMENT_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

ENV_PREFIX = "CHROMA_COMPACTOR_WRITER_"
MAX_BATCH = 25  # BatchWriteItem's limit
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
_COUNTER_BITS = 8


class WriterFull(CompactorError):
    """The buffer is full and the writer was told to raise rather than block."""


class WriterClosed(CompactorError):
    """A write was offered after close()."""


@dataclass(frozen=True)
class Write:
    kind: Literal["put", "update", "delete"]
    collection: str
    id: str
    rev: int
    item: dict[str, Any]  # the DynamoDB attributes to write (for put and update)
    enqueued_at: float


@dataclass(frozen=True)
class WriteFailure:
    write: Write
    reason: str


@dataclass(frozen=True)
class WriterStats:
    enqueued: int
    written: int
    retried: int  # unprocessed items sent again
    failed: int
    pending: int
    mean_latency_ms: float  # enqueue -> written
    max_latency_ms: float


@dataclass
class _Counters:
    enqueued: int = 0
    written: int = 0
    retried: int = 0
    failed: int = 0
    latency_total_s: float = 0.0
    latency_max_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class HybridClock:
    """Revs that follow wall-clock time and never repeat or go backwards in one writer."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(int(self._now() * 1_000_000) << _COUNTER_BITS, self._last + 1)
            return self._last


class Writer:
    def __init__(
        self,
        table_name: str,
        collection: str | None = None,
        *,
        client: DynamoDBClient | None = None,
        batch_size: int = MAX_BATCH,
        max_delay_s: float = 0.05,
        buffer_size: int = 10_000,
        on_full: Literal["block", "raise"] = "block",
        max_attempts: int = 8,
        on_failure: Callable[[WriteFailure], None] | None = None,
        clock: HybridClock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}, got {batch_size}")
        if on_full not in ("block", "raise"):
            raise ValueError(f"on_full must be 'block' or 'raise', got {on_full!r}")
        if client is None:
            from chroma_compactor.wiring import Clients

            client = Clients.create().dynamodb
        self.table_name, self.collection = table_name, collection
        self._ddb = client
        self._batch_size, self._max_delay_s = batch_size, max_delay_s
        self._on_full, self._max_attempts = on_full, max_attempts
        self._on_failure = on_failure
        self._clock = clock or HybridClock()
        self._sleep = sleep
        self._buffer: queue.Queue[Write | None] = queue.Queue(maxsize=buffer_size)
        self._counters = _Counters()
        self._settled = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="chroma-compactor-writer", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Writer:
        """``CHROMA_COMPACTOR_WRITER_{TABLE,COLLECTION,BATCH_SIZE,MAX_DELAY_MS,BUFFER_SIZE,
        ON_FULL,MAX_ATTEMPTS}``; keyword arguments win over the environment."""
        env = os.environ if environ is None else environ
        read = {name: env.get(ENV_PREFIX + name.upper()) for name in _ENV_FIELDS}
        args: dict[str, Any] = {}
        if read["table"]:
            args["table_name"] = read["table"]
        if read["collection"]:
            args["collection"] = read["collection"]
        for name in ("batch_size", "buffer_size", "max_attempts"):
            if read[name]:
                args[name] = int(read[name])  # type: ignore[arg-type]
        if read["max_delay_ms"]:
            args["max_delay_s"] = float(read["max_delay_ms"]) / 1000
        if read["on_full"]:
            args["on_full"] = read["on_full"]
        args |= overrides
        if "table_name" not in args:
            raise CompactorError(f"no table: set {ENV_PREFIX}TABLE or pass table_name")
        return cls(**args)

    # -- the writes ---------------------------------------------------------------------------

    def upsert(
        self,
        id: str,
        embedding: bytes | list[float] | np.ndarray[Any, Any],
        document: str | None = None,
        metadata: Mapping[str, str | int | float | bool] | None = None,
        *,
        collection: str | None = None,
    ) -> int:
        """Queue a whole record; returns its rev."""
        packed = embedding if isinstance(embedding, bytes) else _pack(embedding)
        item: dict[str, Any] = {"embedding": {"B": packed}}
        if document is not None:
            item["document"] = {"S": document}
        if metadata is not None:
            item["metadata"] = {"M": {k: _attribute(v) for k, v in metadata.items()}}
        return self._offer("put", id, item, collection)

    def update(
        self,
        id: str,
        *,
        metadata: Mapping[str, str | int | float | bool] | None = None,
        document: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Queue a change of an existing record's metadata and/or document (each replaced whole).

        An id that does not exist is reported to ``on_failure``, not created.
        """
        if metadata is None and document is None:
            raise ValueError("update needs metadata and/or document")
        item: dict[str, Any] = {}
        if document is not None:
            item["document"] = {"S": document}
        if metadata is not None:
            item["metadata"] = {"M": {k: _attribute(v) for k, v in metadata.items()}}
        return self._offer("update", id, item, collection)

    def delete(self, id: str, *, collection: str | None = None) -> int:
        return self._offer("delete", id, {}, collection)

    # -- draining -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written or failed; False on timeout."""
        with self._counters.lock:
            target = self._counters.enqueued
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled:
            while self._done() < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._settled.wait(left)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Drain, then stop the background thread; True if everything was settled in time."""
        if self._closed:
            return True
        self._closed = True
        drained = self.flush(timeout)
        self._buffer.put(None)
        self._thread.join(timeout)
        return drained

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> WriterStats:
        c = self._counters
        with c.lock:
            done = c.written + c.failed
            return WriterStats(
                enqueued=c.enqueued,
                written=c.written,
                retried=c.retried,
                failed=c.failed,
                pending=c.enqueued - done,
                mean_latency_ms=round(1000 * c.latency_total_s / c.written, 3) if c.written else 0,
                max_latency_ms=round(1000 * c.latency_max_s, 3),
            )

    # -- inside ---------------------------------------------------------------------------------

    def _offer(
        self,
        kind: Literal["put", "update", "delete"],
        id_: str,
        item: dict[str, Any],
        collection: str | None,
    ) -> int:
        if self._closed:
            raise WriterClosed("the writer is closed")
        name = collection or self.collection
        if not name:
            raise ValueError("no collection: pass collection= or give the Writer one")
        if not id_:
            raise ValueError("id must not be empty")
        document = item.get("document", {}).get("S")
        if document is not None and len(document.encode()) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"document of {id_!r} is over {MAX_DOCUMENT_BYTES} bytes")
        rev = self._clock.next()
        full = {"collection": {"S": name}, "id": {"S": id_}, "rev": {"N": str(rev)}, **item}
        if _approx_size(full) > MAX_ITEM_BYTES:
            raise ValueError(f"record {id_!r} is over DynamoDB's 400 KB item limit")
        write = Write(kind, name, id_, rev, full, time.monotonic())
        try:
            self._buffer.put(write, block=self._on_full == "block")
        except queue.Full:
            raise WriterFull(
                f"writer buffer full ({self._buffer.maxsize} writes pending); slow down or flush"
            ) from None
        with self._counters.lock:
            self._counters.enqueued += 1
        return rev

    def _done(self) -> int:
        with self._counters.lock:
            return self._counters.written + self._counters.failed

    def _run(self) -> None:
        batch: list[Write] = []
        while True:
            # A batch waits at most max_delay_s from its first write, however busy the buffer.
            timeout = (
                max(0.0, batch[0].enqueued_at + self._max_delay_s - time.monotonic())
                if batch
                else None
            )
            try:
                write = self._buffer.get(timeout=timeout)
            except queue.Empty:
                write = None if not batch else _FLUSH
            if write is None:
                self._write_batch(batch)
                return
            if write is not _FLUSH:
                if write.kind == "update" or _key(write) in {_key(w) for w in batch}:
                    # Keep order: an update goes alone, and one request may not name a key twice.
                    self._write_batch(batch)
                    batch = []
                if write.kind == "update":
                    self._write_update(write)
                    continue
                batch.append(write)
            if write is _FLUSH or len(batch) >= self._batch_size:
                self._write_batch(batch)
                batch = []

    def _write_batch(self, batch: list[Write]) -> None:
        if not batch:
            return
        pending = {_key(w): w for w in batch}
        for attempt in range(self._max_attempts):
            requests: list[Any] = [_request(w) for w in pending.values()]
            try:
                out = self._ddb.batch_write_item(RequestItems={self.table_name: requests})
            except Exception as e:  # botocore's retries exhausted, or worse: never lose the writes
                self._settle_failed(list(pending.values()), f"BatchWriteItem failed: {e!r}")
                return
            left = out.get("UnprocessedItems", {}).get(self.table_name, [])
            unprocessed = {_request_key(dict(r)) for r in left}
            self._settle_written([w for k, w in pending.items() if k not in unprocessed])
            pending = {k: w for k, w in pending.items() if k in unprocessed}
            if not pending:
                return
            with self._counters.lock:
                self._counters.retried += len(pending)
            self._sleep(_backoff(attempt))
        self._settle_failed(
            list(pending.values()),
            f"still unprocessed after {self._max_attempts} attempts (throttled)",
        )

    def _write_update(self, write: Write) -> None:
        names = {"#rev": "rev"}
        values: dict[str, Any] = {":rev": write.item["rev"]}
        sets = ["#rev = :rev"]
        for attribute in ("document", "metadata"):
            if attribute in write.item:
                names[f"#{attribute}"] = attribute
                values[f":{attribute}"] = write.item[attribute]
                sets.append(f"#{attribute} = :{attribute}")
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key={"collection": write.item["collection"], "id": write.item["id"]},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as e:
            code = e.response["Error"]["Code"]
            reason = "no such record" if code == "ConditionalCheckFailedException" else str(e)
            self._settle_failed([write], f"update failed: {reason}")
            return
        except Exception as e:
            self._settle_failed([write], f"update failed: {e!r}")
            return
        self._settle_written([write])

    def _settle_written(self, writes: list[Write]) -> None:
        now = time.monotonic()
        with self._counters.lock:
            for w in writes:
                latency = now - w.enqueued_at
                self._counters.written += 1
                self._counters.latency_total_s += latency
                self._counters.latency_max_s = max(self._counters.latency_max_s, latency)
        self._notify()

    def _settle_failed(self, writes: list[Write], reason: str) -> None:
        with self._counters.lock:
            self._counters.failed += len(writes)
        for w in writes:
            log.error("write failed: %s", reason, extra={"collection": w.collection, "id": w.id})
            if self._on_failure is not None:
                with contextlib.suppress(Exception):  # a broken callback must not stop the writer
                    self._on_failure(WriteFailure(w, reason))
        self._notify()

    def _notify(self) -> None:
        with self._settled:
            self._settled.notify_all()


_ENV_FIELDS = (
    "table",
    "collection",
    "batch_size",
    "max_delay_ms",
    "buffer_size",
    "on_full",
    "max_attempts",
)
_FLUSH = Write("put", "", "", 0, {}, 0.0)  # marker: the batch is old enough to go


def _key(w: Write) -> tuple[str, str]:
    return w.collection, w.id


def _request(w: Write) -> dict[str, Any]:
    if w.kind == "delete":
        return {"DeleteRequest": {"Key": {"collection": w.item["collection"], "id": w.item["id"]}}}
    return {"PutRequest": {"Item": w.item}}


def _request_key(r: dict[str, Any]) -> tuple[str, str]:
    attrs = r["DeleteRequest"]["Key"] if "DeleteRequest" in r else r["PutRequest"]["Item"]
    return attrs["collection"]["S"], attrs["id"]["S"]


def _backoff(attempt: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
    return random.uniform(0, min(5.0, 0.05 * 2**attempt))


def _pack(embedding: list[float] | np.ndarray[Any, Any]) -> bytes:
    vector = np.asarray(embedding, dtype="<f4")
    if vector.ndim != 1 or not vector.size:
        raise ValueError("embedding must be a non-empty vector")
    if not np.isfinite(vector).all():
        raise ValueError("embedding contains NaN or infinity")
    return vector.tobytes()


def _attribute(value: str | int | float | bool) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(Decimal(str(value)))}
    if isinstance(value, str):
        return {"S": value}
    raise ValueError(f"metadata values are str, int, float or bool, not {type(value).__name__}")


def _approx_size(item: dict[str, Any]) -> int:
    total = 0
    for name, value in item.items():
        ((kind, v),) = value.items()
        total += len(name) + (len(v) if kind in ("B", "S", "N") else len(str(v)))
    return total
