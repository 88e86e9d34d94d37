"""Check a freshly built snapshot before it may be published.

The files are reopened with a fresh Chroma client (a different System than the one that wrote
them), so what is checked is what a reader will see after download, not what sits in memory.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np

from chroma_compactor.errors import ValidationFailed
from chroma_compactor.local_snapshot import close_warm, get_collection, warm_client
from chroma_compactor.merge import EffectKind

EMBEDDING_RTOL, EMBEDDING_ATOL = 1e-5, 1e-7

if TYPE_CHECKING:
    from collections.abc import Mapping

    from chroma_compactor.local_snapshot import LocalSnapshot
    from chroma_compactor.merge import Effect


class EffectSample:
    """A uniform sample (reservoir) of at most ``size`` effects, for validating a bulk load whose
    every effect would not fit in memory; a later effect of a kept id replaces the earlier one."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.effects: dict[str, Effect] = {}
        self._slots: list[str] = []
        self._seen = 0
        self._rng = random.Random(seed)  # a sample, not a secret

    def add(self, effects: Mapping[str, Effect]) -> None:
        for id_, effect in effects.items():
            if id_ in self.effects:
                self.effects[id_] = effect
                continue
            self._seen += 1
            if len(self._slots) < self.size:
                self._slots.append(id_)
                self.effects[id_] = effect
                continue
            slot = self._rng.randrange(self._seen)
            if slot < self.size:
                del self.effects[self._slots[slot]]
                self._slots[slot] = id_
                self.effects[id_] = effect


def validate_snapshot(
    snapshot: LocalSnapshot, collection: str, expected_count: int, applied: Mapping[str, Effect]
) -> None:
    """Raise ValidationFailed unless the count matches the ledger and every applied effect shows.

    The writer's client is closed first, so this one loads what is on disk; it is then kept open
    for the next cycle, which thus starts from files that were checked, without loading them again.
    """
    close_warm(snapshot.chroma_dir)
    with warm_client(snapshot.chroma_dir) as client:
        col = get_collection(client, collection, space="", create=False)
        count = col.count()
        if count != expected_count:
            raise ValidationFailed(
                f"{collection!r}: snapshot holds {count} records, ledger expects {expected_count}"
            )
        ids = list(applied)
        batch = client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            got = col.get(ids=chunk, include=["embeddings", "documents", "metadatas"])
            _compare(collection, chunk, got, applied)


def _compare(collection: str, ids: list[str], got: Any, applied: Mapping[str, Effect]) -> None:
    found = {id_: i for i, id_ in enumerate(got["ids"])}
    for id_ in ids:
        effect = applied[id_]
        if effect.kind is EffectKind.DELETE:
            if id_ in found:
                raise ValidationFailed(f"{collection!r}: deleted id {id_!r} is still present")
            continue
        if id_ not in found:
            raise ValidationFailed(f"{collection!r}: written id {id_!r} is missing")
        i = found[id_]
        want = np.frombuffer(effect.embedding or b"", dtype="<f4")
        # Chroma's cosine space hands back vectors a few ulps off what was written.
        if not np.allclose(
            np.asarray(got["embeddings"][i], dtype="<f4"),
            want,
            rtol=EMBEDDING_RTOL,
            atol=EMBEDDING_ATOL,
        ):
            raise ValidationFailed(
                f"{collection!r}: embedding of {id_!r} differs from what was written"
            )
        if got["documents"][i] != effect.document:
            raise ValidationFailed(
                f"{collection!r}: document of {id_!r} differs from what was written"
            )
        if (got["metadatas"][i] or None) != (effect.metadata or None):
            raise ValidationFailed(
                f"{collection!r}: metadata of {id_!r} differs from what was written"
            )
