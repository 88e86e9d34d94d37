"""Keep the last K versions of a collection; collect blobs no retained manifest names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chroma_compactor.snapshot_store import SnapshotStore

# Blobs younger than this are never collected: a cycle in flight (at most the Lambda's 15 min)
# may have uploaded them for a manifest it has not written yet.
BLOB_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class RetentionResult:
    versions: list[int] = field(default_factory=list)  # the versions deleted (or, dry, doomed)
    blobs: list[str] = field(default_factory=list)  # the blobs deleted (or, dry, doomed)

    @property
    def versions_deleted(self) -> int:
        return len(self.versions)

    @property
    def blobs_deleted(self) -> int:
        return len(self.blobs)


def apply_retention(
    store: SnapshotStore,
    collection: str,
    current_version: int,
    keep: int,
    grace_seconds: float = BLOB_GRACE_SECONDS,
    *,
    sweep: bool = False,
    dry_run: bool = False,
) -> RetentionResult:
    """Delete manifests older than the last ``keep`` versions, then their orphaned blobs.

    Costs one LIST when there is nothing to do, so it can run after every commit; ``sweep``
    (the `gc` command) looks for orphaned blobs even then, such as an abandoned cycle's once
    their grace is over. Versions above ``current_version`` (uploads of abandoned cycles) are
    left alone: their key may be claimed again by the next cycle.
    """
    versions = store.list_versions(collection)
    doomed = [v for v in versions if v <= current_version - keep]
    if not doomed and not sweep:
        return RetentionResult()
    kept = [store.read_manifest(collection, v) for v in versions if v not in doomed]
    blobs = store.unreferenced_blobs(collection, kept, grace_seconds)
    if not dry_run:
        store.delete_versions(collection, doomed)
        store.delete_blobs(collection, blobs)
    return RetentionResult(doomed, blobs)
