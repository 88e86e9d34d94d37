"""Nearest neighbours over a collection's current snapshots, fanned out over its shards.

Always by vector: querying by text would make Chroma load its default embedding model (a
download); a query by id uses that record's own embedding instead.

A ``QueryEngine`` keeps one open Chroma collection per partition and reopens it only when the
partition's pointer has moved, syncing the cached files in place (only changed chunks travel).
It never takes a lease or writes the control table, so reads cannot block or slow compaction.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chroma_compactor.errors import CompactorError
from chroma_compactor.local_snapshot import LocalSnapshot, get_collection
from chroma_compactor.reader import NoSnapshot
from chroma_compactor.shards import Layout

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.reader import Reader

_FANOUT_THREADS = 8


@dataclass(frozen=True)
class Hit:
    id: str
    distance: float
    document: str | None
    metadata: dict[str, Any] | None


@dataclass
class _Open:
    """A partition's cached snapshot, open at one version."""

    version: int
    client: Any
    collection: Any


class QueryEngine:
    """Warm, per-partition snapshot caches for repeated queries (one per Lambda container)."""

    def __init__(self, reader: Reader, cache_dir: Path) -> None:
        self._reader = reader
        self._cache_dir = cache_dir
        self._open: dict[str, _Open] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.refreshes = 0  # how many times a partition was (re)synced and reopened

    def query(
        self,
        collection: str,
        *,
        vector: list[float] | None = None,
        id: str | None = None,
        k: int = 10,
        where: dict[str, Any] | None = None,
    ) -> list[Hit]:
        if (vector is None) == (id is None):
            raise CompactorError("query needs exactly one of a vector or an id")
        if k < 1:
            raise CompactorError(f"k must be at least 1, got {k}")
        layout = self._reader.layouts.read(collection) or Layout(collection)
        if id is not None:
            vector = self._embedding_of(layout, id)
        assert vector is not None
        with ThreadPoolExecutor(max_workers=min(_FANOUT_THREADS, layout.shards)) as pool:
            per_shard = list(
                pool.map(lambda p: self._query_partition(p, vector, k, where), layout.partitions)
            )
        if all(hits is None for hits in per_shard):
            raise NoSnapshot(f"collection {collection!r} has no committed snapshot yet")
        merged = [hit for hits in per_shard if hits for hit in hits]
        return sorted(merged, key=lambda h: h.distance)[:k]

    def close(self) -> None:
        for partition in list(self._open):
            self._open.pop(partition).client.close()

    def _embedding_of(self, layout: Layout, id_: str) -> list[float]:
        opened = self._current(layout.partition_of(id_))
        got = None if opened is None else opened.collection.get(ids=[id_], include=["embeddings"])
        if got is None or not got["ids"]:
            raise CompactorError(f"{layout.collection!r} has no record {id_!r}")
        return [float(x) for x in got["embeddings"][0]]

    def _query_partition(
        self, partition: str, vector: list[float], k: int, where: dict[str, Any] | None
    ) -> list[Hit] | None:
        """This shard's top k, or None if it has no snapshot yet."""
        opened = self._current(partition)
        if opened is None:
            return None
        count = opened.collection.count()
        if count == 0:
            return []
        result = opened.collection.query(
            query_embeddings=[vector],
            n_results=min(k, count),
            where=where or None,
            include=["distances", "documents", "metadatas"],
        )
        return [
            Hit(id=i, distance=float(d), document=doc, metadata=meta)
            for i, d, doc, meta in zip(
                result["ids"][0],
                result["distances"][0],
                result["documents"][0],
                result["metadatas"][0],
                strict=True,
            )
        ]

    def _current(self, partition: str) -> _Open | None:
        """The partition open at its pointed version; resynced only if the pointer moved."""
        with self._guard:
            lock = self._locks.setdefault(partition, threading.Lock())
        with lock:
            version = self._reader.pointers.read(partition).version
            opened = self._open.get(partition)
            if version == 0:
                return None
            if opened is not None and opened.version == version:
                return opened
            if opened is not None:
                # Close before the files change under it: Chroma shares one System per path.
                opened.client.close()
                del self._open[partition]
            self._open[partition] = self._load(partition, version)
            self.refreshes += 1
            return self._open[partition]

    def _load(self, partition: str, version: int) -> _Open:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        manifest = self._reader.store.read_manifest(partition, version)
        snapshot = LocalSnapshot(self._cache_dir / partition)
        try:
            self._reader.store.sync(manifest, snapshot)
        except Exception:
            shutil.rmtree(snapshot.root, ignore_errors=True)  # never leave a half-synced copy
            raise
        client = chromadb.PersistentClient(
            path=str(snapshot.chroma_dir), settings=ChromaSettings(anonymized_telemetry=False)
        )
        return _Open(version, client, get_collection(client, partition, space="", create=False))


def query(
    reader: Reader,
    collection: str,
    *,
    vector: list[float] | None = None,
    id: str | None = None,
    k: int = 10,
    where: dict[str, Any] | None = None,
) -> list[Hit]:
    """One query with a cache that outlives it only on disk (the CLI's case)."""
    engine = QueryEngine(reader, reader.cache_dir / "query")
    try:
        return engine.query(collection, vector=vector, id=id, k=k, where=where)
    finally:
        engine.close()
