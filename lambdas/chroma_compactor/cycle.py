"""One compaction cycle: the commit protocol of ARCHITECTURE.md, step by step.

    lease -> read pointer -> load snapshot -> fetch more -> apply -> validate -> upload
          -> commit (lease check + pointer CAS in one transaction) -> delete messages -> release

A cycle that cannot commit publishes nothing, deletes nothing and hands its messages straight
back to the queue. Messages of several collections may share a queue; each collection is
compacted under its own lease, one after another, within the same invocation.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chroma_compactor.apply import ApplyResult, apply_plan, reject_mismatched_dimensions
from chroma_compactor.delta import DeltaReader, DeltaUnavailable
from chroma_compactor.errors import (
    CommitRejected,
    DeadlineExceeded,
    InvalidMessage,
    LeaseBusy,
    LeaseLost,
    SnapshotCorrupt,
    UnknownSnapshotFormat,
    ValidationFailed,
)
from chroma_compactor.lease import Heartbeat
from chroma_compactor.local_snapshot import close_warm, get_collection, warm_client
from chroma_compactor.merge import Plan, plan
from chroma_compactor.ops import OpKind, decode
from chroma_compactor.queue import WorkQueue
from chroma_compactor.retention import apply_retention
from chroma_compactor.settings import SnapshotTransfer
from chroma_compactor.snapshot_cache import SnapshotCache
from chroma_compactor.validate import EffectSample, validate_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from chroma_compactor.health import HealthTable
    from chroma_compactor.lease import Lease, LeaseTable
    from chroma_compactor.ledger import Ledger
    from chroma_compactor.local_snapshot import LocalSnapshot
    from chroma_compactor.merge import Effect
    from chroma_compactor.ops import Operation
    from chroma_compactor.pointer import Pointer, PointerTable
    from chroma_compactor.queue import QueueMessage
    from chroma_compactor.settings import Settings
    from chroma_compactor.shards import Layout, LayoutTable
    from chroma_compactor.snapshot_store import DigestIndex, Manifest, SnapshotStore

log = logging.getLogger(__name__)

# Effects of deltas that validation re-reads (a uniform sample: a bulk load's every record would
# not fit in memory); the batch's own operations are all re-read.
_DELTA_CHECKS = 2_000
# Time kept in reserve for upload, commit and acks when deciding whether to go on.
_COMMIT_RESERVE_S = 20.0
# Why a cycle gives up without publishing; any of these leaves the pointer and messages intact.
_ABANDON = (
    LeaseBusy,
    LeaseLost,
    CommitRejected,
    SnapshotCorrupt,
    UnknownSnapshotFormat,
    ValidationFailed,
    DeadlineExceeded,
    ClientError,
    BotoCoreError,
)
# Abandons that are not contention but a snapshot in trouble: noted for `status` to show.
_RECORDED = (SnapshotCorrupt, UnknownSnapshotFormat, ValidationFailed)


class Step(StrEnum):
    LEASE = "lease"
    DOWNLOAD = "download"
    FETCH = "fetch"
    APPLY = "apply"
    VALIDATE = "validate"
    UPLOAD = "upload"
    COMMIT = "commit"
    DELETE = "delete"
    RELEASE = "release"


class Hooks:
    """Called before each step; the seam through which tests inject crashes and stalls."""

    def before(self, step: Step, collection: str) -> None:
        """Production does nothing here."""


@dataclass(frozen=True)
class Compactor:
    """Everything a cycle needs, built once per process by the wiring code."""

    settings: Settings
    leases: LeaseTable
    pointers: PointerTable
    store: SnapshotStore
    sqs: SQSClient
    s3: S3Client  # reads deltas (bulk loads); snapshots go through ``store``
    owner: str
    layouts: LayoutTable
    health: HealthTable
    clock: Callable[[], float] = time.time
    hooks: Hooks = field(default_factory=Hooks)


@dataclass
class Outcome:
    """What one collection's cycle did."""

    collection: str
    committed_version: int | None = None
    abandoned: str | None = None  # the reason, when nothing was published
    messages: int = 0
    applied: int = 0
    coalesced: int = 0
    stale: int = 0
    not_found: int = 0
    failed: int = 0
    delta_records: int = 0  # records read from deltas (bulk loads) for this partition
    records: int = 0
    upload_bytes: int = 0
    download_bytes: int = 0
    phases_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class CycleReport:
    outcomes: list[Outcome] = field(default_factory=list)
    rejected: int = 0  # messages that could not be decoded at all
    fetched: int = 0
    failed_event_ids: list[str] = field(default_factory=list)

    def batch_item_failures(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in self.failed_event_ids]}


@dataclass
class _Work:
    """Messages of this invocation, decoded and grouped by partition, until each is settled.

    A partition is a collection, or one shard of a sharded collection (see shards.py).
    """

    partition_of: Callable[[Operation], str]
    # After a refused commit: the layout may have changed (see _Layouts.forget).
    forget_layouts: Callable[[], None] = field(default=lambda: None)
    pending: dict[str, list[tuple[QueueMessage, Operation]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    failed: list[tuple[QueueMessage, str]] = field(default_factory=list)
    done: list[QueueMessage] = field(default_factory=list)  # deleted after commit

    def add(self, messages: list[QueueMessage]) -> None:
        """All or nothing: if a layout cannot be read, no message is taken."""
        routed: list[tuple[str, QueueMessage, Operation]] = []
        rejected: list[tuple[QueueMessage, str]] = []
        for message in messages:
            try:
                op = decode(message.body)
                partition = self.partition_of(op)
            except InvalidMessage as e:
                rejected.append((message, str(e)))
                continue
            # Keep the decoded operation, not its JSON too (a 1536-dim body is ~8 KiB of base64).
            routed.append((partition, replace(message, body=""), op))
        self.failed += rejected
        for partition, message, op in routed:
            self.pending[partition].append((message, op))

    def next_collection(self) -> str | None:
        return next((c for c, items in self.pending.items() if items), None)

    def take(self, collection: str) -> list[tuple[QueueMessage, Operation]]:
        return self.pending.pop(collection, [])


class _Layouts:
    """Each collection's layout, read once per invocation."""

    def __init__(self, c: Compactor) -> None:
        self._c = c
        self._known: dict[str, Layout] = {}

    def partition_of(self, op: Operation) -> str:
        layout = self._known.get(op.collection)
        if layout is None:
            configured = self._c.settings.shards_for(op.collection)
            layout = self._known[op.collection] = self._c.layouts.ensure(op.collection, configured)
        if op.delta is None:
            return layout.partition_of(op.id)
        if op.delta.shards != layout.shards:
            raise InvalidMessage(
                f"delta {op.id!r} was split for {op.delta.shards} shards but "
                f"{op.collection!r} has {layout.shards} (resharded since?); its records are in "
                "the table: rebuild the collection from it"
            )
        return layout.partitions[op.delta.shard]

    def forget(self) -> None:
        """Read layouts again: a commit refused on a pointer ``reshard`` retired means the one
        read is stale, and messages fetched from now on must go to the new partitions."""
        self._known.clear()


def run_cycle(
    compactor: Compactor, event_messages: list[QueueMessage], queue_url: str, deadline: float
) -> CycleReport:
    """Compact every collection named by the event's messages (and by what greedy fetch adds).

    ``deadline`` is on ``time.monotonic()``'s clock: the invocation must be over by then.
    """
    report = CycleReport()
    layouts = _Layouts(compactor)
    work = _Work(layouts.partition_of, layouts.forget)
    queue = WorkQueue(compactor.sqs, queue_url)
    work.add(event_messages)
    try:
        while (collection := work.next_collection()) is not None:
            report.outcomes.append(
                _compact_collection(compactor, collection, work, queue, deadline, report)
            )
    except Exception:
        queue.release([m for items in work.pending.values() for m, _ in items])
        queue.release([m for m, _ in work.failed])
        raise
    for message, reason in work.failed:
        log.error(
            "message rejected: %s",
            reason,
            extra={
                "message_id": message.message_id,
                "reason": reason,
                "receive_count": message.receive_count,
                "queue_url": message.queue_url,
            },
        )
    report.rejected = len(work.failed)
    failed = [m for m, _ in work.failed]
    compactor.hooks.before(Step.RELEASE, "*")
    # Failed messages come back at once; after maxReceiveCount SQS moves them to the DLQ.
    queue.release(failed)
    deleted = {m.message_id for m in work.done}
    report.failed_event_ids = [m.message_id for m in event_messages if m.message_id not in deleted]
    return report


def _compact_collection(
    c: Compactor,
    collection: str,
    work: _Work,
    queue: WorkQueue,
    deadline: float,
    report: CycleReport,
) -> Outcome:
    outcome = Outcome(collection)
    timer = _PhaseTimer(outcome)
    cache = SnapshotCache(Path(c.settings.cache_dir), collection)
    batch: list[tuple[QueueMessage, Operation]] = []
    failure_of: Callable[[Operation], str | None] = _no_failure
    lease: Lease | None = None
    try:
        with timer(Step.LEASE, c.hooks, collection):
            lease = acquire_lease(c, collection, deadline)
        with Heartbeat(c.leases, lease, c.settings.lease_seconds) as heartbeat:
            pointer = c.pointers.read(collection)
            with timer(Step.DOWNLOAD, c.hooks, collection):
                parent = load_snapshot(c, cache, pointer, outcome)
            heartbeat.ensure_held()
            with timer(Step.FETCH, c.hooks, collection):
                fetched = fetch_more(c, queue, deadline)
                report.fetched += len(fetched)
                try:
                    work.add(fetched)
                except Exception:
                    queue.release(fetched)  # none was taken; none may wait hidden
                    raise
                del fetched  # the bodies: work holds the decoded operations
            batch = work.take(collection)
            outcome.messages = len(batch)
            applied = publish(
                c,
                cache,
                heartbeat,
                pointer,
                parent,
                [op for _, op in batch],
                outcome,
                timer,
                deadline,
            )
            failure_of = applied.failure_of
            lease = heartbeat.lease
    except _ABANDON as e:
        outcome.abandoned = f"{type(e).__name__}: {e}"
        log.warning("cycle abandoned: %s", outcome.abandoned, extra={"collection": collection})
        if isinstance(e, _RECORDED):
            c.health.record(collection, e)
        if isinstance(e, CommitRejected):
            work.forget_layouts()
        _give_back(c, queue, batch or work.take(collection), lease, timer, collection)
        return outcome
    except Exception:
        # Unexpected: hand everything back before the error escapes, so nothing waits hidden.
        _give_back(c, queue, batch or work.take(collection), lease, timer, collection)
        raise

    ack(c, queue, batch, failure_of, work, timer, collection)
    _release_quietly(c, lease)
    return outcome


def _give_back(
    c: Compactor,
    queue: WorkQueue,
    batch: list[tuple[QueueMessage, Operation]],
    lease: Lease | None,
    timer: _PhaseTimer,
    collection: str,
) -> None:
    with timer(Step.RELEASE, c.hooks, collection):
        queue.release([m for m, _ in batch])
    if lease is not None:
        _release_quietly(c, lease)


def publish_operations(
    c: Compactor, collection: str, operations: list[Operation], deadline: float
) -> Outcome:
    """Run the commit protocol on operations that come from elsewhere than the queue.

    Rebuilds and re-ingests from a table scan use this: the same lease, ledger rules,
    validation and transaction as a queue cycle, just no messages to fetch or acknowledge.
    Raises what a queue cycle would abandon on, since there is nothing to hand back.
    """
    outcome = Outcome(collection, messages=len(operations))
    timer = _PhaseTimer(outcome)
    cache = SnapshotCache(Path(c.settings.cache_dir), collection)
    with timer(Step.LEASE, c.hooks, collection):
        lease = acquire_lease(c, collection, deadline)
    try:
        with Heartbeat(c.leases, lease, c.settings.lease_seconds) as heartbeat:
            pointer = c.pointers.read(collection)
            with timer(Step.DOWNLOAD, c.hooks, collection):
                parent = load_snapshot(c, cache, pointer, outcome)
            publish(c, cache, heartbeat, pointer, parent, operations, outcome, timer, deadline)
            lease = heartbeat.lease
    finally:
        _release_quietly(c, lease)
    return outcome


# -- the steps ------------------------------------------------------------------------------------


def publish(
    c: Compactor,
    cache: SnapshotCache,
    heartbeat: Heartbeat,
    pointer: Pointer,
    parent: Manifest | None,
    operations: list[Operation],
    outcome: Outcome,
    timer: _PhaseTimer,
    deadline: float,
) -> Applied:
    """Apply, validate, upload and commit: from a loaded working copy to a published version."""
    collection = pointer.collection
    cache.mark_dirty()
    with timer(Step.APPLY, c.hooks, collection):
        applied = apply(c, cache.snapshot, collection, operations, deadline)
    _count(outcome, applied)
    heartbeat.ensure_held()
    _ensure_time(deadline, collection)
    if applied.effects:
        with timer(Step.VALIDATE, c.hooks, collection):
            try:
                validate_snapshot(cache.snapshot, collection, applied.records, applied.effects)
            except ValidationFailed as e:
                # `status` shows this (health note): which version was refused, and why.
                raise ValidationFailed(f"version {pointer.version + 1} not published: {e}") from e
        with timer(Step.UPLOAD, c.hooks, collection):
            manifest = upload(
                c, cache.snapshot, pointer, parent, heartbeat.lease, applied, outcome, cache.digests
            )
        heartbeat.ensure_held()
        with timer(Step.COMMIT, c.hooks, collection):
            commit(c, heartbeat.lease, pointer, manifest)
        outcome.committed_version = manifest.version
        retain(c, collection, manifest.version, outcome)
    else:
        # Nothing to publish; still prove the verdicts were made on the current version.
        with timer(Step.COMMIT, c.hooks, collection):
            c.pointers.confirm(c.leases, heartbeat.lease, pointer.version)
    cache.mark_clean(outcome.committed_version or pointer.version)
    return applied


def acquire_lease(c: Compactor, collection: str, deadline: float) -> Lease:
    wait = min(
        c.settings.lease_wait_seconds, max(0.0, deadline - time.monotonic() - _COMMIT_RESERVE_S)
    )
    return c.leases.acquire_waiting(collection, c.owner, c.settings.lease_seconds, wait)


def load_snapshot(
    c: Compactor, cache: SnapshotCache, pointer: Pointer, outcome: Outcome
) -> Manifest | None:
    """Make the working copy equal the pointed version: reuse it if warm, else sync from S3."""
    if cache.clean_version() != pointer.version:
        close_warm(cache.snapshot.chroma_dir)  # its memory may hold what was never committed
    if pointer.version == 0:
        if cache.clean_version() != 0:
            cache.snapshot.wipe()
        cache.snapshot.ensure()
        return None
    manifest = c.store.read_manifest(pointer.collection, pointer.version)
    if c.settings.snapshot_transfer is SnapshotTransfer.WHOLE:
        cache.snapshot.wipe()  # no cache: every cycle downloads the whole snapshot
    if cache.clean_version() != pointer.version or not cache.snapshot.root.exists():
        cache.mark_dirty()
        stats = c.store.sync(manifest, cache.snapshot)
        outcome.download_bytes = stats.bytes
        cache.mark_clean(pointer.version)
    return manifest


def fetch_more(c: Compactor, queue: WorkQueue, deadline: float) -> list[QueueMessage]:
    """Greedily receive more, invisible until well after this invocation must have ended."""
    visibility = int(max(0.0, deadline - time.monotonic()) + c.settings.visibility_margin_seconds)
    return queue.fetch_more(
        max_count=c.settings.max_messages_per_cycle,
        seconds=min(
            c.settings.fetch_seconds, max(0.0, deadline - time.monotonic() - _COMMIT_RESERVE_S)
        ),
        visibility_seconds=min(visibility, 43_200),  # SQS's maximum visibility timeout
    )


@dataclass
class Applied:
    """What ``apply`` did to the working copy."""

    plan: Plan  # counts of every op planned (the effects are in ``result.applied``)
    result: ApplyResult | None  # counts; ``applied``: what validation checks
    failures: dict[str, str]  # id -> why it could not be applied
    records: int
    tombstones: int
    dimension: int | None
    failed_deltas: dict[str, str] = field(default_factory=dict)  # run id -> why
    delta_records: int = 0

    @property
    def effects(self) -> dict[str, Effect]:
        return self.result.applied if self.result is not None else {}

    def failure_of(self, op: Operation) -> str | None:
        if op.op is OpKind.DELTA:
            return self.failed_deltas.get(op.id)
        return self.failures.get(op.id)


def apply(
    c: Compactor,
    snapshot: LocalSnapshot,
    collection: str,
    operations: list[Operation],
    deadline: float | None = None,
) -> Applied:
    """Coalesce the batch against the ledger and write the effects to Chroma and the ledger.

    Deltas (bulk loads) go first, streamed from S3 a chunk at a time through the same plan and
    ledger, so memory stays one chunk whatever their size; then the batch's own operations, so
    an update patches a record that its batch's delta created. A delta too big for the time
    left before ``deadline`` abandons the cycle between chunks rather than be cut off by it.
    """
    now = c.clock()
    result = ApplyResult()
    applied = Applied(Plan(), result, {}, records=0, tombstones=0, dimension=None)
    singles = [op for op in operations if op.op is not OpKind.DELTA]
    checks = EffectSample(_DELTA_CHECKS)
    with snapshot.open_ledger() as ledger, _Chroma(snapshot, collection, c.settings) as chroma:
        for op in operations:
            if op.op is OpKind.DELTA:
                _apply_delta(c, chroma, ledger, op, now, applied, checks, deadline)
        effects = _apply_ops(chroma, ledger, singles, now, applied, applied.failures)
        # The batch's own effects are all checked, and win over a delta's for the same id.
        result.applied = checks.effects | effects
        ledger.prune_tombstones(now - c.settings.tombstone_horizon_days * 86_400)
        applied.records = ledger.live_count()
        applied.tombstones = ledger.tombstone_count()
        applied.dimension = ledger.dimension
    return applied


def _apply_delta(
    c: Compactor,
    chroma: _Chroma,
    ledger: Ledger,
    op: Operation,
    now: float,
    applied: Applied,
    checks: EffectSample,
    deadline: float | None,
) -> None:
    """Stream one delta message's records through plan and apply_plan, a Chroma batch at a
    time. A delta that is missing or damaged changes nothing and fails its message alone."""
    reader = DeltaReader(c.s3, op)
    failures: dict[str, str] = {}
    try:
        for chunk in reader.chunks(chroma.max_batch()):
            if deadline is not None:
                _ensure_time(deadline, op.collection)
            checks.add(_apply_ops(chroma, ledger, chunk, now, applied, failures))
    except DeltaUnavailable as e:
        log.error("delta not applied: %s", e, extra={"collection": op.collection, "id": op.id})
        applied.failed_deltas[op.id] = str(e)
        return
    finally:
        applied.delta_records += reader.read
    problems = [reader.failure() or ""]
    if failures:
        shown = "; ".join(list(failures.values())[:5])
        problems.append(f"delta {op.id!r}: {len(failures)} records not applied: {shown}")
    if any(problems):
        applied.failed_deltas[op.id] = " / ".join(p for p in problems if p)


def _apply_ops(
    chroma: _Chroma,
    ledger: Ledger,
    operations: list[Operation],
    now: float,
    applied: Applied,
    failures: dict[str, str],
) -> dict[str, Effect]:
    """Plan ``operations`` against the ledger and apply the effects; returns those effects and
    adds the counts to ``applied`` and the failed ids to ``failures``."""
    collection = chroma.name
    ops, rejected, dimension = reject_mismatched_dimensions(operations, ledger.dimension)
    for op, reason in rejected:
        failures[op.id] = reason
        log.error("operation rejected: %s", reason, extra={"collection": collection, "id": op.id})
    plan_ = plan(ops, ledger.get_many(op.id for op in ops))
    _add_plan(applied.plan, plan_)
    if not plan_.effects:
        return {}
    chroma_collection = chroma.collection()
    if ledger.dimension is None and dimension is not None:
        ledger.dimension = dimension
    result = apply_plan(chroma_collection, ledger, plan_, now, chroma.max_batch())
    for id_, reason in result.failed.items():
        log.error(
            "record rejected by chroma: %s", reason, extra={"collection": collection, "id": id_}
        )
    failures |= result.failed
    assert applied.result is not None
    applied.result.upserted += result.upserted
    applied.result.deleted += result.deleted
    applied.result.not_found += result.not_found
    return result.applied


def _add_plan(total: Plan, part: Plan) -> None:
    total.stale += part.stale
    total.coalesced += part.coalesced
    total.not_found += part.not_found
    total.ops += part.ops


class _Chroma:
    """The working copy's Chroma collection, opened on first need: a batch whose ops are all
    stale never loads the index."""

    def __init__(self, snapshot: LocalSnapshot, name: str, settings: Settings) -> None:
        self._snapshot = snapshot
        self.name = name
        self._space = settings.hnsw_space
        self._stack = ExitStack()
        self._client: Any = None
        self._collection: Any = None

    def __enter__(self) -> _Chroma:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def collection(self) -> Any:
        if self._collection is None:
            self._collection = get_collection(self._open(), self.name, self._space, create=True)
        return self._collection

    def max_batch(self) -> int:
        return int(self._open().get_max_batch_size())

    def _open(self) -> Any:
        if self._client is None:
            self._client = self._stack.enter_context(warm_client(self._snapshot.chroma_dir))
        return self._client


def upload(
    c: Compactor,
    snapshot: LocalSnapshot,
    pointer: Pointer,
    parent: Manifest | None,
    lease: Lease,
    applied: Applied,
    outcome: Outcome,
    digests: DigestIndex | None = None,
) -> Manifest:
    import chromadb

    manifest, stats = c.store.upload(
        snapshot,
        collection=pointer.collection,
        version=pointer.version + 1,
        parent=parent,
        fencing_token=lease.token,
        record_count=applied.records,
        tombstone_count=applied.tombstones,
        dimension=applied.dimension,
        chroma_version=chromadb.__version__,
        chunk_bytes=c.settings.chunk_bytes,
        upload_all=c.settings.snapshot_transfer is SnapshotTransfer.WHOLE,
        digests=digests,
    )
    outcome.upload_bytes = stats.bytes
    return manifest


def commit(c: Compactor, lease: Lease, pointer: Pointer, manifest: Manifest) -> None:
    c.pointers.commit(
        c.leases,
        lease,
        expected_version=pointer.version,
        new_version=manifest.version,
        manifest_key=c.store.manifest_key(manifest.collection, manifest.version),
        record_count=manifest.record_count,
    )


def retain(c: Compactor, collection: str, version: int, outcome: Outcome) -> None:
    """Bound storage after a commit; a failure here costs only space, never the cycle."""
    start = time.perf_counter()
    try:
        apply_retention(c.store, collection, version, c.settings.retain_versions)
    except (ClientError, BotoCoreError, SnapshotCorrupt) as e:
        log.warning("retention of %r failed, will retry next commit: %s", collection, e)
    outcome.phases_ms["retention"] = round((time.perf_counter() - start) * 1000, 1)


def ack(
    c: Compactor,
    queue: WorkQueue,
    batch: list[tuple[QueueMessage, Operation]],
    failure_of: Callable[[Operation], str | None],
    work: _Work,
    timer: _PhaseTimer,
    collection: str,
) -> None:
    """After the commit: delete what is settled; failed ids' messages go the DLQ way."""
    settled: list[QueueMessage] = []
    for message, op in batch:
        reason = failure_of(op)
        if reason is None:
            settled.append(message)
        else:
            work.failed.append((message, f"{collection!r}: {reason}"))
    with timer(Step.DELETE, c.hooks, collection):
        refused = queue.delete(settled)
    if refused:
        log.warning(
            "%d deletes refused; those messages will return and be skipped as stale", refused
        )
    work.done.extend(settled)


# -- helpers --------------------------------------------------------------------------------------


def _no_failure(_op: Operation) -> str | None:
    return None


def _count(outcome: Outcome, applied: Applied) -> None:
    result = applied.result
    outcome.coalesced = applied.plan.coalesced
    outcome.stale = applied.plan.stale
    outcome.not_found = applied.plan.not_found + (result.not_found if result else 0)
    outcome.applied = (result.upserted + result.deleted) if result else 0
    outcome.failed = len(applied.failures) + len(applied.failed_deltas)
    outcome.delta_records = applied.delta_records
    outcome.records = applied.records


def _ensure_time(deadline: float, collection: str) -> None:
    left = deadline - time.monotonic()
    if left < _COMMIT_RESERVE_S:
        raise DeadlineExceeded(
            f"{collection!r}: only {left:.1f}s left, too little to upload and commit"
        )


def _release_quietly(c: Compactor, lease: Lease) -> None:
    try:
        c.leases.release(lease)
    except (ClientError, BotoCoreError) as e:
        # The lease runs out on its own; failing to hand it back early costs only waiting time.
        log.warning("could not release lease of %r: %s", lease.collection, e)


class _PhaseTimer:
    def __init__(self, outcome: Outcome) -> None:
        self._outcome = outcome

    @contextmanager
    def __call__(self, step: Step, hooks: Hooks, collection: str) -> Iterator[None]:
        hooks.before(step, collection)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._outcome.phases_ms[step.value] = round((time.perf_counter() - start) * 1000, 1)
