"""The compactor's working copy of a collection in /tmp, reused across warm invocations.

A small state file says which committed version the working copy equals. It is marked dirty
before a cycle touches the files and clean again only after that cycle's commit succeeded, so an
abandoned cycle can never leave behind a copy that claims to be a version it is not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chroma_compactor.local_snapshot import LocalSnapshot
from chroma_compactor.snapshot_store import DigestIndex

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class SnapshotCache:
    root: Path
    collection: str

    @property
    def snapshot(self) -> LocalSnapshot:
        return LocalSnapshot(self.root / self.collection / "work")

    @property
    def digests(self) -> DigestIndex:
        """What the working copy's files hashed to, so unchanged ones are not read again."""
        return DigestIndex(self.root / self.collection / "digests.json")

    @property
    def _state_path(self) -> Path:
        return self.root / self.collection / "state.json"

    def clean_version(self) -> int | None:
        """The committed version the working copy holds, or None if it is dirty or absent."""
        try:
            state = json.loads(self._state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return int(state["version"]) if state.get("clean") else None

    def mark_dirty(self) -> None:
        self._write({"version": None, "clean": False})

    def mark_clean(self, version: int) -> None:
        self._write({"version": version, "clean": True})

    def _write(self, state: dict[str, object]) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._state_path)
