"""Read what the pipeline built: resolve the pointer, sync a cache to its manifest, open it.

Readers never take the lease and never write the pointer, so reads cannot slow compaction.
A reader's cache lives apart from the compactor's working copy.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chroma_compactor.errors import CompactorError
from chroma_compactor.local_snapshot import CHROMA_DIR, LocalSnapshot, chroma_client, get_collection

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from chroma_compactor.pointer import PointerTable
    from chroma_compactor.shards import LayoutTable
    from chroma_compactor.snapshot_store import Manifest, SnapshotStore


class NoSnapshot(CompactorError):
    """The collection has no committed version yet."""


@dataclass(frozen=True)
class Reader:
    pointers: PointerTable
    store: SnapshotStore
    cache_dir: Path
    layouts: LayoutTable

    def resolve(self, collection: str, version: int | None = None) -> Manifest:
        if version is None:
            version = self.pointers.read(collection).version
            if version == 0:
                raise NoSnapshot(f"collection {collection!r} has no committed snapshot yet")
        return self.store.read_manifest(collection, version)

    def sync(self, collection: str, version: int | None = None) -> tuple[Manifest, LocalSnapshot]:
        """Bring the reader cache to a version, downloading only the chunks it lacks."""
        manifest = self.resolve(collection, version)
        snapshot = LocalSnapshot(self.cache_dir / collection / f"v{manifest.version}")
        self.store.sync(manifest, snapshot)
        return manifest, snapshot

    @contextmanager
    def open(self, collection: str, version: int | None = None) -> Iterator[Any]:
        """A stock Chroma collection object on the chosen (default: current) version."""
        _, snapshot = self.sync(collection, version)
        with chroma_client(snapshot.chroma_dir) as client:
            yield get_collection(client, collection, space="", create=False)

    def export(self, collection: str, out_dir: Path, version: int | None = None) -> Manifest:
        """Write a version's Chroma persist directory to ``out_dir`` for stock Chroma to open."""
        manifest, snapshot = self.sync(collection, version)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise CompactorError(f"{out_dir} is not empty; export needs an empty or new directory")
        shutil.copytree(snapshot.root / CHROMA_DIR, out_dir, dirs_exist_ok=True)
        return manifest
