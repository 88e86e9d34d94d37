"""A snapshot on local disk: Chroma's persist directory plus the ledger beside it.

Layout of a snapshot root (and of every version in S3)::

    chroma/            stock Chroma persist directory (chroma.sqlite3 + HNSW segment dirs)
    ledger.sqlite3     id -> rev and tombstones (see ledger.py)

``chroma/`` alone is what ``export`` hands to users: stock ``chromadb.PersistentClient`` opens it.
"""

from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chroma_compactor.ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CHROMA_DIR = "chroma"
LEDGER_FILE = "ledger.sqlite3"


@contextmanager
def chroma_client(path: Path) -> Iterator[Any]:
    """A PersistentClient that is closed on exit, so its files are flushed and can be copied.

    Chroma shares one System per path inside a process; closing the last client stops it, so
    the next client on the same path really reopens the files (what validation relies on).
    """
    client = _open_client(path)
    try:
        yield client
    finally:
        client.close()


# The compactor's working copy stays open between the cycles of a warm process: opening loads
# the whole HNSW index (and replays Chroma's log), a cost that grows with the collection. At most
# one idle client is kept, so memory stays that of one index.
_warm: dict[Path, Any] = {}
_warm_lock = threading.Lock()


@contextmanager
def warm_client(path: Path) -> Iterator[Any]:
    """The kept client of ``path`` (opened if there is none), kept again on exit.

    Whoever changes the files by other means (sync, wipe) must ``close_warm(path)`` first. An
    error inside closes the client: its state is then unknown.
    """
    with _warm_lock:
        client = _warm.pop(path, None)
    if client is None:
        client = _open_client(path)
    try:
        yield client
    except BaseException:
        client.close()
        raise
    with _warm_lock:
        idle = list(_warm.values())
        _warm.clear()
        _warm[path] = client
    for other in idle:
        other.close()


def close_warm(path: Path) -> None:
    """Close the kept client of ``path``, if any, so the next one reads the files afresh."""
    with _warm_lock:
        client = _warm.pop(path, None)
    if client is not None:
        client.close()


def _open_client(path: Path) -> Any:
    import chromadb  # heavy: imported only where a snapshot is opened
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
    )


def get_collection(client: Any, name: str, space: str, create: bool) -> Any:
    """Open (or create) a collection with no embedding function of our own.

    Passing ``embedding_function=None`` keeps the collection's saved config loadable by stock
    Chroma; we never let Chroma embed anything, because every write carries its vector.
    """
    if create:
        return client.get_or_create_collection(
            name=name, embedding_function=None, metadata={"hnsw:space": space}
        )
    return client.get_collection(name=name, embedding_function=None)


@dataclass(frozen=True)
class LocalSnapshot:
    root: Path

    @property
    def chroma_dir(self) -> Path:
        return self.root / CHROMA_DIR

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER_FILE

    def ensure(self) -> None:
        self.chroma_dir.mkdir(parents=True, exist_ok=True)

    def open_ledger(self) -> Ledger:
        self.ensure()
        return Ledger(self.ledger_path)

    def files(self) -> list[Path]:
        """Every file of the snapshot, relative to the root, in a stable order."""
        if not self.root.exists():
            return []
        return sorted(p.relative_to(self.root) for p in self.root.rglob("*") if p.is_file())

    def wipe(self) -> None:
        close_warm(self.chroma_dir)
        shutil.rmtree(self.root, ignore_errors=True)
