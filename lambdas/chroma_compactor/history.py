"""A partition's retained versions: listing them, going back to one, collecting the rest.

Versions are numbered per partition (a sharded collection's shards move independently), so these
commands take a partition: an unsharded collection's name, or ``<collection>.s<i>-of-<n>``.

Rollback never moves a pointer backwards. Caches, the commit CAS and every reader rely on
versions only growing, so going back to V publishes a *new* version N + 1 whose manifest names
V's blobs (``rolled_back_from: V``), committed like a cycle: under the lease, by the pointer CAS.
The ledger travels inside the snapshot, so N + 1 carries V's ledger: a message newer than V that
arrives again is applied again; one already deleted from the queue never comes back. ``rebuild``
is the exact alternative: it rebuilds the table's current state.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chroma_compactor.errors import CompactorError, ConfigurationError, LeaseBusy
from chroma_compactor.lease import Heartbeat
from chroma_compactor.ops import RESERVED_SUFFIX
from chroma_compactor.retention import BLOB_GRACE_SECONDS, RetentionResult, apply_retention

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chroma_compactor.cycle import Compactor
    from chroma_compactor.lease import Lease
    from chroma_compactor.pointer import Pointer, PointerTable
    from chroma_compactor.shards import LayoutTable
    from chroma_compactor.snapshot_store import Manifest, SnapshotStore


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: str
    record_count: int
    bytes: int
    fencing_token: int
    current: bool
    note: str  # where a re-published version's content came from, else ""


def partition_for(layouts: LayoutTable, name: str) -> str:
    """The one partition a version command acts on; a sharded collection must name its shard."""
    if RESERVED_SUFFIX.search(name):
        return name
    layout = layouts.read(name)
    if layout is not None and layout.shards > 1:
        raise ConfigurationError(
            f"{name!r} has {layout.shards} shards, each with its own versions: name one of "
            + ", ".join(layout.partitions)
        )
    return name


def list_versions(
    store: SnapshotStore, pointers: PointerTable, partition: str
) -> list[VersionInfo]:
    """Every version whose manifest is still in S3, oldest first, the current one marked."""
    current = pointers.read(partition).version
    found = []
    for version in store.list_versions(partition):
        m = store.read_manifest(partition, version)
        found.append(
            VersionInfo(
                version=version,
                created_at=m.created_at,
                record_count=m.record_count,
                bytes=m.total_bytes,
                fencing_token=m.fencing_token,
                current=version == current,
                note=_note(m),
            )
        )
    if current and current not in {v.version for v in found}:
        raise CompactorError(f"{partition!r} points at version {current}, whose manifest is gone")
    return found


def rollback(c: Compactor, partition: str, to: int) -> Manifest:
    """Publish version ``to``'s content as the next version; returns the new manifest."""
    with held_lease(c, partition) as beat:
        pointer = c.pointers.read(partition)
        retained = c.store.list_versions(partition)
        if to not in retained or to > pointer.version:
            committed = [v for v in retained if v <= pointer.version]
            raise ConfigurationError(
                f"{partition!r} has no retained version {to}; retained: "
                + (", ".join(map(str, committed)) or "none")
            )
        if to == pointer.version:
            raise ConfigurationError(f"{partition!r} is at version {to} already")
        source = c.store.read_manifest(partition, to)
        return republish(c, beat, pointer, source, rolled_back_from=to)


def republish(
    c: Compactor,
    beat: Heartbeat,
    pointer: Pointer,
    source: Manifest,
    *,
    rolled_back_from: int | None = None,
    restored_from: str | None = None,
) -> Manifest:
    """Commit ``source``'s files (their blobs already under ``pointer``'s partition) as the
    pointer's next version, with a cycle's transaction; then bound storage as a cycle does."""
    from chroma_compactor.cycle import Outcome, retain

    beat.ensure_held()
    manifest = source.model_copy(
        update={
            "collection": pointer.collection,
            "version": pointer.version + 1,
            "parent_version": pointer.version or None,
            "fencing_token": beat.lease.token,
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "rolled_back_from": rolled_back_from,
            "restored_from": restored_from,
        }
    )
    c.store.put_manifest(manifest)
    beat.ensure_held()
    c.pointers.commit(
        c.leases,
        beat.lease,
        expected_version=pointer.version,
        new_version=manifest.version,
        manifest_key=c.store.manifest_key(pointer.collection, manifest.version),
        record_count=manifest.record_count,
    )
    retain(c, pointer.collection, manifest.version, Outcome(pointer.collection))
    return manifest


def collect(
    c: Compactor,
    partition: str,
    *,
    dry_run: bool = False,
    grace_seconds: float | None = None,
    retired: bool = False,
) -> RetentionResult:
    """Retention and blob collection now, for `gc`: the same rules as after every commit.

    A ``retired`` partition (replaced by `reshard`) keeps no version: its blobs go once their
    grace is over.
    """
    current = c.pointers.read(partition).version  # a retired pointer keeps its last version
    return apply_retention(
        c.store,
        partition,
        current,
        0 if retired else c.settings.retain_versions,
        BLOB_GRACE_SECONDS if grace_seconds is None else grace_seconds,
        sweep=True,
        dry_run=dry_run,
    )


def acquire_for_operator(c: Compactor, partition: str) -> Lease:
    """A partition's lease for an operator command, waiting as long as a cycle would."""
    try:
        return c.leases.acquire_waiting(
            partition, c.owner, c.settings.lease_seconds, c.settings.lease_wait_seconds
        )
    except LeaseBusy as e:
        raise LeaseBusy(
            f"{e}; a compactor is publishing to it: try again when it is done "
            f"(waited {c.settings.lease_wait_seconds:.0f}s, LEASE_WAIT_SECONDS)"
        ) from e


@contextmanager
def held_lease(c: Compactor, partition: str) -> Iterator[Heartbeat]:
    """The partition's lease, heartbeated, released on exit: what a cycle holds to commit."""
    lease = acquire_for_operator(c, partition)
    try:
        with Heartbeat(c.leases, lease, c.settings.lease_seconds) as beat:
            yield beat
            lease = beat.lease
    finally:
        c.leases.release(lease)


def _note(m: Manifest) -> str:
    if m.rolled_back_from is not None:
        return f"rollback to {m.rolled_back_from}"
    if m.restored_from is not None:
        return f"restored from {m.restored_from}"
    return ""
