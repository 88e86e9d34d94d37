"""The writer client: how a user's service writes records to the source table.

    with Writer("my-vectors", "docs") as w:
        w.upsert("a1", embedding, document="…", metadata={"lang": "en"})
        w.update("a1", metadata={"lang": "fr"})
        w.delete("a2")

Writes wait in a bounded buffer and one background thread sends them, in batches of up to 25
(by size) or once the oldest has waited ``max_delay_s`` (by age). A full buffer blocks the caller
or raises ``WriterFull`` (``on_full``). Throttling is retried by botocore's retry mode; items a
BatchWriteItem leaves unprocessed are sent again with jittered exponential backoff; a write that
still fails goes to ``on_failure`` and the stats, never silently away. A record the pipeline
could not carry (a message over SQS's 256 KiB, which is stricter than DynamoDB's 400 KB item, a
NaN, a reserved metadata key) is refused when it is offered, with ``InvalidRecord``.

**Revs** come from a hybrid logical clock, ``max(now_µs << 8, last + 1)``, one per process: they
follow wall-clock time across writers and processes and strictly grow within a process, so a
record re-created after a delete gets a rev above the deleted one (the compactor's tombstone
keeps the REMOVE's old image's rev) and is never taken for a stale write.

**Modes.** The compactor keeps, per id, the op with the highest rev; the table must agree.

- ``conditional`` (default): each write is its own request, taking effect only over an older rev
  (``attribute_not_exists(id) OR rev < :rev``; an update also needs the record), the batch's
  requests sent in parallel. A delete removes the record (its REMOVE tells the compactor) and
  then leaves a *stub* ``{collection, id, rev, deleted: true}``, which the forwarder skips (no
  embedding, document or metadata) but which keeps the delete's rev in the table: an older put
  that lands later is refused instead of re-creating the record behind the compactor's
  tombstone. So the table, like the snapshot, keeps the highest rev of every id, and any number
  of writers may write, delete and re-create the same ids. A write that lost to a newer one is
  counted ``superseded``. Stubs stay until the id is written again; removing old ones (a TTL
  sweep days later) is safe.
- ``batch``: BatchWriteItem, 25 items a request, no conditions and no stubs: the table keeps
  whichever write lands last. Exact when each id is written through one Writer at a time (one
  Writer keeps the order of its writes to an id); ~25x fewer requests.

**Bulk loads.** ``bulk_load(records)`` writes a whole run at once: every record gets a rev and
goes to the table by BatchWriteItem with ``bulk_run = <run id>`` (the forwarder skips those
images), the records also go to one gzip NDJSON delta in S3, and a run item announces it, which
the forwarder turns into one message per shard: the compactor merges the run in one cycle, and a
million records never cross SQS one by one. A later put or update through this client clears
``bulk_run`` (a put replaces the item, an update removes it), so later changes flow as usual.
The table writes are unconditional, as in ``batch`` mode: load ids no other writer is writing
at the same moment. See docs/bulk_load.md.

Limits: "later" means a later rev, i.e. later by the writers' clocks. Two writers writing one id
within their clock skew (NTP: milliseconds) are ordered by their clocks, not by real time, and a
re-create must follow another machine's delete by more than that skew to win (the table and the
snapshot still agree either way). Equal revs from two processes (same µs and counter) are
settled by whichever lands first, in the table and the snapshot alike.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chroma_compactor import ops
from chroma_compactor.delta import BULK_RUN, DeltaFile, delta_key, run_item
from chroma_compactor.errors import CompactorError, ConfigurationError, InvalidMessage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    import numpy as np
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

ENV_PREFIX = "CHROMA_COMPACTOR_WRITER_"
MAX_BATCH = 25  # BatchWriteItem's limit; 25 messages of 256 KiB stay under its 16 MB
_COUNTER_BITS = 8
# Conditions of the conditional mode. A stub (``deleted``) is what a delete leaves: its rev.
_NEWER = "attribute_not_exists(#id) OR #rev < :rev"
_RECORD_AND_NEWER = "attribute_not_exists(#deleted) AND #rev < :rev"
_ABSENT_OR_OLDER_STUB = "attribute_not_exists(#id) OR (attribute_exists(#deleted) AND #rev < :rev)"
_DELETE_ROUNDS = 5
# BatchWriteItem requests of a bulk load in flight at once.
_BULK_IN_FLIGHT = 8

Mode = Literal["conditional", "batch"]
OnFull = Literal["block", "raise"]
Kind = Literal["put", "update", "delete"]
MetadataValue = str | int | float | bool


class WriterFull(CompactorError):
    """The buffer is full and the writer was told to raise rather than block."""


class WriterClosed(CompactorError):
    """A write was offered after close()."""


class InvalidRecord(CompactorError, ValueError):
    """A record the pipeline could never carry; refused before it reaches the table."""


class BulkLoadFailed(CompactorError):
    """A bulk load stopped before its run item was written: the records it already put in the
    table (``bulk_run = run_id``) are not in the snapshot. Load them again (a new run)."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(f"bulk load {run_id}: {message}")
        self.run_id = run_id


class WriterConfig(BaseModel):
    """What a Writer does; from arguments or ``CHROMA_COMPACTOR_WRITER_<FIELD>`` variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str = Field(min_length=1)
    collection: str | None = None
    mode: Mode = "conditional"
    batch_size: int = Field(MAX_BATCH, ge=1, le=MAX_BATCH)
    max_delay_seconds: float = Field(0.05, ge=0)
    buffer_size: int = Field(10_000, ge=1)
    on_full: OnFull = "block"
    max_attempts: int = Field(8, ge=1)
    # Where bulk_load puts its deltas: the pipeline's snapshot bucket (SNAPSHOT_BUCKET).
    delta_bucket: str | None = None
    # A delete's stub expires (DynamoDB TTL on `ttl`) once no late write can need it: after the
    # compactor's 14-day tombstone horizon and the queues' retention, an older write is lost anyway.
    stub_ttl_days: float = Field(21.0, gt=14.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WriterConfig:
        """``CHROMA_COMPACTOR_WRITER_TABLE``, ``…_BATCH_SIZE`` etc.; an argument beats the
        environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            name: env[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if env.get(ENV_PREFIX + name.upper())
        }
        values |= {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**values)
        except ValidationError as e:
            problems = "; ".join(
                f"{loc} ({ENV_PREFIX}{loc.upper()}): {err['msg']}"
                for err in e.errors()
                for loc in [".".join(str(p) for p in err["loc"])]
            )
            raise ConfigurationError(f"invalid writer configuration: {problems}") from None


@dataclass(frozen=True)
class Write:
    kind: Kind
    collection: str
    id: str
    rev: int
    item: dict[str, Any]  # DynamoDB attributes: keys and rev, plus the record's fields for put
    enqueued_at: float

    @property
    def key(self) -> tuple[str, str]:
        return self.collection, self.id


@dataclass(frozen=True)
class Record:
    """One record of a bulk load."""

    id: str
    embedding: bytes | list[float] | np.ndarray[Any, Any]
    document: str | None = None
    metadata: Mapping[str, MetadataValue] | None = None


@dataclass(frozen=True)
class BulkLoad:
    """What a bulk load wrote: the run, its delta and the revs its records got."""

    run_id: str
    collection: str
    records: int
    delta: str  # s3://bucket/key
    sha256: str
    first_rev: int
    last_rev: int
    retried: int  # BatchWriteItem items sent again (throttling)


@dataclass(frozen=True)
class WriteFailure:
    write: Write
    reason: str


@dataclass(frozen=True)
class WriterStats:
    enqueued: int
    written: int
    superseded: int  # lost to a newer rev already in the table (conditional writes)
    retried: int  # requests botocore repeated plus unprocessed items sent again
    failed: int  # reported to on_failure
    pending: int
    mean_latency_ms: float  # enqueue -> written
    max_latency_ms: float


class HybridClock:
    """Revs that follow wall-clock time and never repeat or go backwards in one process."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(int(self._now() * 1_000_000) << _COUNTER_BITS, self._last + 1)
            return self._last


PROCESS_CLOCK = HybridClock()


class _Signal(Enum):
    FLUSH = "flush"
    STOP = "stop"


Outcome = Literal["written", "superseded", "failed"]


@dataclass
class _Counters:
    enqueued: int = 0
    written: int = 0
    superseded: int = 0
    retried: int = 0
    failed: int = 0
    latency_total_s: float = 0.0
    latency_max_s: float = 0.0

    @property
    def settled(self) -> int:
        return self.written + self.superseded + self.failed


@dataclass
class _Settled:
    """What one send did, handed back to be counted at once."""

    outcomes: list[tuple[Write, Outcome, str]] = field(default_factory=list)
    retries: int = 0

    def add(self, write: Write, outcome: Outcome, reason: str = "") -> None:
        self.outcomes.append((write, outcome, reason))


class Writer:
    """Writes records to the source table in the background; see the module docstring."""

    def __init__(
        self,
        table_name: str,
        collection: str | None = None,
        *,
        client: DynamoDBClient | None = None,
        mode: Mode = "conditional",
        batch_size: int = MAX_BATCH,
        max_delay_s: float = 0.05,
        buffer_size: int = 10_000,
        on_full: OnFull = "block",
        max_attempts: int = 8,
        on_failure: Callable[[WriteFailure], None] | None = None,
        clock: HybridClock = PROCESS_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        s3_client: S3Client | None = None,
        delta_bucket: str | None = None,
    ) -> None:
        self.config = WriterConfig.from_env(
            {},
            table=table_name,
            collection=collection,
            mode=mode,
            batch_size=batch_size,
            max_delay_seconds=max_delay_s,
            buffer_size=buffer_size,
            on_full=on_full,
            max_attempts=max_attempts,
            delta_bucket=delta_bucket,
        )
        self._ddb = client or _default_client(max_attempts)
        self._s3 = s3_client
        self._on_failure = on_failure
        self._clock = clock
        self._sleep = sleep
        self._buffer: queue.Queue[Write | _Signal] = queue.Queue(maxsize=buffer_size)
        self._counters = _Counters()
        self._settled = threading.Condition()  # guards _counters; notified as writes settle
        self._offer_lock = threading.Lock()  # a rev and its place in the buffer, taken together
        self._closed = False
        self._pool = ThreadPoolExecutor(batch_size, thread_name_prefix="chroma-compactor-write")
        self._thread = threading.Thread(target=self._run, name="chroma-compactor-writer")
        self._thread.daemon = True
        self._thread.start()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        client: DynamoDBClient | None = None,
        on_failure: Callable[[WriteFailure], None] | None = None,
        s3_client: S3Client | None = None,
        **overrides: Any,
    ) -> Writer:
        """A writer configured by ``CHROMA_COMPACTOR_WRITER_*``; keyword arguments (the fields of
        WriterConfig) win over the environment."""
        c = WriterConfig.from_env(environ, **overrides)
        return cls(
            c.table,
            c.collection,
            client=client,
            mode=c.mode,
            batch_size=c.batch_size,
            max_delay_s=c.max_delay_seconds,
            buffer_size=c.buffer_size,
            on_full=c.on_full,
            max_attempts=c.max_attempts,
            on_failure=on_failure,
            s3_client=s3_client,
            delta_bucket=c.delta_bucket,
        )

    # -- the writes ---------------------------------------------------------------------------

    def upsert(
        self,
        id: str,
        embedding: bytes | list[float] | np.ndarray[Any, Any],
        document: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        *,
        collection: str | None = None,
    ) -> int:
        """Queue a whole record (float32 embedding); returns its rev."""
        name = self._collection(collection)
        packed = ops.pack_embedding(embedding)
        _check(lambda: ops.upsert(name, id, 0, packed, document, _plain(metadata)))
        fields: dict[str, Any] = {"embedding": {"B": packed}}
        fields |= _fields(document, metadata)
        return self._offer("put", name, id, fields)

    def update(
        self,
        id: str,
        *,
        metadata: Mapping[str, MetadataValue] | None = None,
        document: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Queue a change of an existing record's metadata and/or document (each replaced
        whole). An id that does not exist is reported to ``on_failure``, not created."""
        name = self._collection(collection)
        _check(lambda: ops.update(name, id, 0, document, _plain(metadata)))
        return self._offer("update", name, id, _fields(document, metadata))

    def delete(self, id: str, *, collection: str | None = None) -> int:
        name = self._collection(collection)
        _check(lambda: ops.delete(name, id, 0))
        return self._offer("delete", name, id, {})

    def bulk_load(self, records: Iterable[Record], *, collection: str | None = None) -> BulkLoad:
        """Write ``records`` as one run: to the table and to one delta that the compactor merges
        in one cycle (see the module docstring); returns once the run item is written.

        A record the pipeline cannot carry stops the load with InvalidRecord; the records before
        it are still published as the run (the table and the snapshot keep agreeing), the
        message says which. Any other failure raises BulkLoadFailed with the run id.

        Records stream through: memory holds a few batches and the set of ids (a later record
        of the same id wins, as a later write would). For very large loads, call once per slice
        of ~100K records, so that each delta is one cycle well within the compactor's time.
        """
        name = self._collection(collection)
        bucket = self.config.delta_bucket
        if not bucket:
            raise ConfigurationError(
                "bulk_load needs delta_bucket= (the pipeline's SNAPSHOT_BUCKET; "
                f"{ENV_PREFIX}DELTA_BUCKET)"
            )
        self.flush()  # a write queued earlier must not land after the run's, with a lower rev
        run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        writes = _BulkWrites(self, run_id)
        delta = DeltaFile()
        first_rev = last_rev = 0
        refused: InvalidRecord | None = None
        try:
            for record in records:
                rev = self._clock.next()
                packed = ops.pack_embedding(record.embedding)
                try:
                    body = _check(
                        partial(
                            ops.upsert,
                            name,
                            record.id,
                            rev,
                            packed,
                            record.document,
                            _plain(record.metadata),
                        )
                    )
                except InvalidRecord as e:
                    refused = e
                    break
                first_rev, last_rev = first_rev or rev, rev
                delta.add(body)
                item = {"collection": {"S": name}, "id": {"S": record.id}, "rev": {"N": str(rev)}}
                item |= {"embedding": {"B": packed}} | _fields(record.document, record.metadata)
                writes.put(Write("put", name, record.id, rev, item | {BULK_RUN: {"S": run_id}}, 0))
            if delta.records == 0:  # nothing to announce
                if refused is not None:
                    raise refused
                return BulkLoad(run_id, name, 0, "", "", 0, 0, 0)
            writes.finish()
            ref = delta.upload(self._delta_s3(), bucket, delta_key(name, run_id))
            # Last: its INSERT is what makes the compactor merge the run.
            self._ddb.put_item(TableName=self.config.table, Item=run_item(name, run_id, ref))
        except BulkLoadFailed:
            writes.abandon()
            raise
        except (ClientError, BotoCoreError, OSError) as e:
            writes.abandon()
            raise BulkLoadFailed(run_id, str(e)) from e
        finally:
            delta.close()
        if refused is not None:
            raise InvalidRecord(
                f"bulk load {run_id} stopped after {ref.records} records (those were loaded): "
                f"{refused}"
            )
        return BulkLoad(
            run_id=run_id,
            collection=name,
            records=ref.records,
            delta=f"s3://{ref.bucket}/{ref.key}",
            sha256=ref.sha256,
            first_rev=first_rev,
            last_rev=last_rev,
            retried=writes.retried,
        )

    # -- draining -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now and wait until it is written or failed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled:
            target = self._counters.enqueued
        try:
            self._buffer.put(_Signal.FLUSH, timeout=timeout)
        except queue.Full:
            return False
        with self._settled:
            while self._counters.settled < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._settled.wait(left)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Send everything queued, then stop; True if all of it settled within ``timeout``."""
        with self._offer_lock:
            if self._closed:
                return self.stats().pending == 0
            self._closed = True
        try:
            self._buffer.put(_Signal.STOP, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._pool.shutdown()
        return self.stats().pending == 0

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> WriterStats:
        with self._settled:
            c = self._counters
            return WriterStats(
                enqueued=c.enqueued,
                written=c.written,
                superseded=c.superseded,
                retried=c.retried,
                failed=c.failed,
                pending=c.enqueued - c.settled,
                mean_latency_ms=round(1000 * c.latency_total_s / c.written, 3) if c.written else 0,
                max_latency_ms=round(1000 * c.latency_max_s, 3),
            )

    # -- inside ---------------------------------------------------------------------------------

    def _delta_s3(self) -> S3Client:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def _collection(self, collection: str | None) -> str:
        name = collection or self.config.collection
        if not name:
            raise ValueError("no collection: pass collection= or give the Writer one")
        return name

    def _offer(self, kind: Kind, collection: str, id_: str, fields: dict[str, Any]) -> int:
        with self._offer_lock:
            if self._closed:
                raise WriterClosed("the writer is closed")
            # The rev is taken with the buffer's place so that one id's writes leave in rev order.
            rev = self._clock.next()
            item = {"collection": {"S": collection}, "id": {"S": id_}, "rev": {"N": str(rev)}}
            write = Write(kind, collection, id_, rev, item | fields, time.monotonic())
            try:
                self._buffer.put(write, block=self.config.on_full == "block")
            except queue.Full:
                raise WriterFull(
                    f"writer buffer full ({self.config.buffer_size} writes pending); "
                    "slow down, flush, or raise buffer_size"
                ) from None
        with self._settled:
            self._counters.enqueued += 1
        return rev

    def _run(self) -> None:
        batch: dict[tuple[str, str], Write] = {}
        while True:
            # A batch leaves at most max_delay after its oldest write was offered.
            oldest = next(iter(batch.values()), None)
            timeout = (
                None
                if oldest is None
                else max(0.0, oldest.enqueued_at + self.config.max_delay_seconds - time.monotonic())
            )
            try:
                got = self._buffer.get(timeout=timeout)
            except queue.Empty:
                got = _Signal.FLUSH
            if isinstance(got, Write):
                if got.key in batch:  # one request may not name a key twice; keep its order
                    self._send(list(batch.values()))
                    batch = {}
                batch[got.key] = got
                if len(batch) < self.config.batch_size:
                    continue
            self._send(list(batch.values()))
            batch = {}
            if got is _Signal.STOP:
                return

    def _send(self, batch: list[Write]) -> None:
        if not batch:
            return
        done = _Settled()
        try:
            if self.config.mode == "batch":
                single = [w for w in batch if w.kind == "update"]  # needs its condition: exists
                self._batch_write([w for w in batch if w.kind != "update"], done)
            else:
                single = batch
            for write, (outcome, reason, retries) in zip(
                single, self._pool.map(self._conditional_write, single), strict=True
            ):
                done.add(write, outcome, reason)
                done.retries += retries
        except Exception as e:  # the thread must live on: report the batch, never lose it
            log.exception("writer could not send a batch")
            seen = {id(w) for w, _, _ in done.outcomes}
            for w in batch:
                if id(w) not in seen:
                    done.add(w, "failed", f"unexpected error: {e!r}")
        self._settle(done)

    def _batch_write(self, writes: list[Write], done: _Settled) -> None:
        table = self.config.table
        pending = {w.key: w for w in writes}
        for attempt in range(self.config.max_attempts):
            if not pending:
                return
            if attempt:
                done.retries += len(pending)
                self._sleep(_backoff(attempt - 1))
            requests: list[Any] = [_batch_request(w) for w in pending.values()]
            try:
                out = self._ddb.batch_write_item(RequestItems={table: requests})
            except (ClientError, BotoCoreError) as e:  # botocore's own retries are spent
                done.retries += _retry_attempts(getattr(e, "response", {}))
                for w in pending.values():
                    done.add(w, "failed", f"BatchWriteItem failed: {e}")
                return
            done.retries += _retry_attempts(out)
            left = {_request_key(dict(r)) for r in out.get("UnprocessedItems", {}).get(table, [])}
            for key, w in pending.items():
                if key not in left:
                    done.add(w, "written")
            pending = {k: w for k, w in pending.items() if k in left}
        for w in pending.values():
            reason = f"still unprocessed after {self.config.max_attempts} attempts (throttled)"
            done.add(w, "failed", reason)

    def _conditional_write(self, w: Write) -> tuple[Outcome, str, int]:
        """One write that takes effect only over an older rev (an update: only on a record)."""
        try:
            if w.kind == "delete":
                return self._conditional_delete(w)
            if w.kind == "put":
                ok, old, retries = self._attempt("put_item", w, _NEWER, Item=w.item)
            else:
                changed = [a for a in ("document", "metadata") if a in w.item]
                # REMOVE bulk_run: from now on the record's changes are forwarded one by one.
                ok, old, retries = self._attempt(
                    "update_item",
                    w,
                    _RECORD_AND_NEWER,
                    Key=_key_attributes(w),
                    UpdateExpression="SET "
                    + ", ".join(f"#{a} = :{a}" for a in ["rev", *changed])
                    + f" REMOVE #{BULK_RUN}",
                    ExpressionAttributeNames={f"#{a}": a for a in [*changed, BULK_RUN]},
                    ExpressionAttributeValues={f":{a}": w.item[a] for a in changed},
                )
        except ClientError as e:
            return "failed", f"{w.kind} failed: {e}", _retry_attempts(e.response)
        except BotoCoreError as e:
            return "failed", f"{w.kind} failed: {e}", 0
        if ok:
            return "written", "", retries
        if w.kind == "update" and (old is None or _is_stub(old)):
            return "failed", "update failed: no such record", retries
        return _lost_to(old, w), "", retries

    def _conditional_delete(self, w: Write) -> tuple[Outcome, str, int]:
        """Remove the record (its REMOVE tells the compactor), then leave a stub at the delete's
        rev: without it the table would forget the rev, and an older put landing later would
        re-create the record in the table while the compactor's tombstone keeps it deleted."""
        retries, removed = 0, False
        for _ in range(_DELETE_ROUNDS):
            ok, old, n = self._attempt("delete_item", w, _RECORD_AND_NEWER, Key=_key_attributes(w))
            retries += n
            removed = removed or ok
            if old is not None and (not _is_stub(old) or _rev(old) >= w.rev):
                return ("written" if removed else _lost_to(old, w)), "", retries
            stub = w.item | {"deleted": {"BOOL": True}, "ttl": {"N": str(self._stub_expiry())}}
            ok, old, n = self._attempt("put_item", w, _ABSENT_OR_OLDER_STUB, Item=stub)
            retries += n
            if ok or (old is not None and (_is_stub(old) or _rev(old) >= w.rev)):
                return ("written" if ok or removed else _lost_to(old, w)), "", retries
            # An older put landed between the two steps: remove that record too.
        return "failed", f"delete kept losing races for {_DELETE_ROUNDS} rounds", retries

    def _stub_expiry(self) -> int:
        return int(time.time() + self.config.stub_ttl_days * 86_400)

    def _attempt(
        self, call: str, w: Write, condition: str, **params: Any
    ) -> tuple[bool, dict[str, Any] | None, int]:
        """(took effect, the item whose rev stopped it, botocore's retries)."""
        used = condition + params.get("UpdateExpression", "")
        names = {"#id": "id", "#rev": "rev", "#deleted": "deleted"}
        names |= params.pop("ExpressionAttributeNames", {})
        values = {":rev": w.item["rev"]} | params.pop("ExpressionAttributeValues", {})
        try:
            out: Any = getattr(self._ddb, call)(
                TableName=self.config.table,
                ConditionExpression=condition,
                # DynamoDB refuses a name or value the expressions do not use.
                ExpressionAttributeNames={k: v for k, v in names.items() if k in used},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **params,
            )
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old: Any = dict(e.response).get("Item")
            return False, old, _retry_attempts(e.response)
        return True, None, _retry_attempts(out)

    def _settle(self, done: _Settled) -> None:
        now = time.monotonic()
        failures: list[WriteFailure] = []
        with self._settled:
            c = self._counters
            c.retried += done.retries
            for write, outcome, reason in done.outcomes:
                if outcome == "written":
                    c.written += 1
                    latency = now - write.enqueued_at
                    c.latency_total_s += latency
                    c.latency_max_s = max(c.latency_max_s, latency)
                elif outcome == "superseded":
                    c.superseded += 1
                else:
                    c.failed += 1
                    failures.append(WriteFailure(write, reason))
        for failure in failures:
            w = failure.write
            # Reported once: to the callback when there is one, else as an error in the log.
            log.log(
                logging.ERROR if self._on_failure is None else logging.DEBUG,
                "write failed: %s",
                failure.reason,
                extra={"collection": w.collection, "id": w.id, "rev": w.rev},
            )
            if self._on_failure is not None:
                try:
                    self._on_failure(failure)
                except Exception:  # a broken callback must not stop the writer thread
                    log.exception("on_failure callback raised")
        with self._settled:  # counted before the callback ran; waiters wake after it
            self._settled.notify_all()


def _default_client(max_attempts: int) -> DynamoDBClient:
    """Adaptive retries: throttling also slows the writer's own request rate. (Not wiring's
    clients: wiring imports chromadb, which a service that only writes has no use for.)"""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        max_pool_connections=MAX_BATCH,
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client("dynamodb", config=config)


def _check(build: Callable[[], ops.Operation]) -> str:
    """Refuse now what the forwarder or the compactor would refuse later; the message body."""
    op_id = "?"
    try:
        op = build()
        op_id = op.id
        return ops.checked_body(op)
    except InvalidMessage as e:
        raise InvalidRecord(str(e)) from None
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise InvalidRecord(f"invalid record {op_id!r}: {problems}") from None


def _plain(metadata: Mapping[str, MetadataValue] | None) -> ops.Metadata | None:
    return None if metadata is None else dict(metadata)


def _fields(document: str | None, metadata: Mapping[str, MetadataValue] | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if document is not None:
        fields["document"] = {"S": document}
    if metadata is not None:
        fields["metadata"] = {"M": {k: _attribute(v) for k, v in metadata.items()}}
    return fields


def _attribute(value: MetadataValue) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(Decimal(str(value)))}
    return {"S": value}


def _batch_request(w: Write) -> dict[str, Any]:
    if w.kind == "delete":
        return {"DeleteRequest": {"Key": _key_attributes(w)}}
    return {"PutRequest": {"Item": w.item}}


def _request_key(r: dict[str, Any]) -> tuple[str, str]:
    attrs = r["DeleteRequest"]["Key"] if "DeleteRequest" in r else r["PutRequest"]["Item"]
    return attrs["collection"]["S"], attrs["id"]["S"]


def _key_attributes(w: Write) -> dict[str, Any]:
    return {"collection": w.item["collection"], "id": w.item["id"]}


def _rev(item: dict[str, Any]) -> int:
    return int(item["rev"]["N"])


def _is_stub(item: dict[str, Any]) -> bool:
    return "deleted" in item


def _lost_to(old: dict[str, Any] | None, w: Write) -> Outcome:
    """A write refused for ``old``: the same rev means botocore resent one that had landed."""
    return "written" if old is not None and _rev(old) == w.rev else "superseded"


def _retry_attempts(response: Any) -> int:
    """How many times botocore resent the request (a response or a ClientError's response)."""
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))


def _backoff(attempt: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
    return random.uniform(0, min(5.0, 0.05 * 2**attempt))


class _BulkWrites:
    """A bulk load's BatchWriteItem requests, a few in flight at once, unprocessed items retried
    with the writer's backoff. An id met again waits for what is in flight, so the later record
    (the higher rev) always lands last."""

    def __init__(self, writer: Writer, run_id: str) -> None:
        self._writer = writer
        self._run_id = run_id
        self._batch: list[Write] = []
        self._seen: set[str] = set()
        self._in_flight: list[Future[_Settled]] = []
        self.retried = 0

    def put(self, write: Write) -> None:
        if write.id in self._seen:
            self._send()
            self._drain()
        self._seen.add(write.id)
        self._batch.append(write)
        if len(self._batch) == MAX_BATCH:
            self._send()

    def finish(self) -> None:
        self._send()
        self._drain()

    def abandon(self) -> None:
        wait(self._in_flight)
        self._in_flight = []

    def _send(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        if len(self._in_flight) >= _BULK_IN_FLIGHT:
            done, pending = wait(self._in_flight, return_when="FIRST_COMPLETED")
            self._in_flight = list(pending)
            for future in done:
                self._settle(future.result())
        self._in_flight.append(self._writer._pool.submit(self._write, batch))

    def _write(self, batch: list[Write]) -> _Settled:
        done = _Settled()
        self._writer._batch_write(batch, done)
        return done

    def _drain(self) -> None:
        for future in self._in_flight:
            self._settle(future.result())
        self._in_flight = []

    def _settle(self, done: _Settled) -> None:
        self.retried += done.retries
        failed = [(w, reason) for w, outcome, reason in done.outcomes if outcome == "failed"]
        if failed:
            w, reason = failed[0]
            raise BulkLoadFailed(
                self._run_id, f"{len(failed)} records not written, e.g. {w.id!r}: {reason}"
            )
