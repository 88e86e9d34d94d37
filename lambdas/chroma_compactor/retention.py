"""Keep the last K versions of a collection; collect blobs no retained manifest names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chroma_compactor.snapshot_store import SnapshotStore

# Blobs younger than this are never collected: a cycle in flight (at most the Lambda's 15 min)
# may have uploaded them for a manifest it has not written yet.
BLOB_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class RetentionResult:
    versions_deleted: int = 0
    blobs_deleted: int = 0


def apply_retention(
    store: SnapshotStore,
    collection: str,
    current_version: int,
    keep: int,
    grace_seconds: float = BLOB_GRACE_SECONDS,
) -> RetentionResult:
    """Delete manifests older than the last ``keep`` versions, then their orphaned blobs.

    Costs one LIST when there is nothing to do, so it can run after every commit. Versions above
    ``current_version`` (uploads of abandoned cycles) are left alone: their key may be claimed
    again by the next cycle.
    """
    versions = store.list_versions(collection)
    doomed = [v for v in versions if v <= current_version - keep]
    if not doomed:
        return RetentionResult()
    store.delete_versions(collection, doomed)
    kept = [store.read_manifest(collection, v) for v in versions if v not in doomed]
    blobs = store.collect_garbage(collection, kept, grace_seconds)
    return RetentionResult(versions_deleted=len(doomed), blobs_deleted=blobs)
