"""Apply a plan's effects to a Chroma collection and record them in the ledger.

Chroma 1.5 merges on upsert (a metadata key absent from the new map survives, a ``None``
document keeps the old one) and is silent about missing ids on update/delete, so this module makes
each record equal to its effect explicitly: removed metadata keys are set to ``None``, a removed
document is cleared by delete-then-add, and existence comes from the ledger and ``get``, never from
an exception.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.errors import ChromaError

from chroma_compactor.ledger import Entry
from chroma_compactor.merge import Effect, EffectKind

if TYPE_CHECKING:
    from collections.abc import Sequence

    from chroma_compactor.ledger import Ledger
    from chroma_compactor.merge import Plan
    from chroma_compactor.ops import Metadata, Operation


# What Chroma raises for a record it will not store (bad metadata type, dimension, ...).
_REJECTED = (ValueError, TypeError, ChromaError)


@dataclass
class ApplyResult:
    upserted: int = 0
    deleted: int = 0
    not_found: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason
    applied: dict[str, Effect] = field(default_factory=dict)


def reject_mismatched_dimensions(
    ops: Sequence[Operation], dimension: int | None
) -> tuple[list[Operation], list[tuple[Operation, str]], int | None]:
    """Split off upserts whose vector length differs from the collection's.

    An empty collection takes the most common dimension of the batch, so one bad message cannot
    decide the shape of a new collection.
    """
    if dimension is None:
        dims = Counter(op.dimension for op in ops if op.dimension is not None)
        dimension = dims.most_common(1)[0][0] if dims else None
    kept: list[Operation] = []
    rejected: list[tuple[Operation, str]] = []
    for op in ops:
        if op.dimension is not None and op.dimension != dimension:
            rejected.append(
                (
                    op,
                    f"embedding of {op.id!r} has dimension {op.dimension}, collection has {dimension}",
                )
            )
        else:
            kept.append(op)
    return kept, rejected, dimension


def apply_plan(
    collection: Any, ledger: Ledger, plan: Plan, now: float, max_batch: int
) -> ApplyResult:
    result = ApplyResult()
    puts = [e for e in plan.effects.values() if e.kind is EffectKind.PUT]
    patches = [e for e in plan.effects.values() if e.kind is EffectKind.PATCH]
    deletes = [e for e in plan.effects.values() if e.kind is EffectKind.DELETE]

    current = _get(collection, [e.id for e in puts + patches], max_batch)
    for patch in patches:
        if patch.id in current:
            puts.append(_resolve_patch(patch, current[patch.id]))
        else:
            result.not_found += 1

    for batch in _batches(deletes, max_batch):
        collection.delete(ids=[e.id for e in batch])
        result.deleted += len(batch)
        for e in batch:
            result.applied[e.id] = e

    # Chroma keeps an old document when the new one is None: clear it by delete-then-add.
    dropping_document = [
        e.id
        for e in puts
        if e.document is None and current.get(e.id, {}).get("document") is not None
    ]
    for start in range(0, len(dropping_document), max_batch):
        collection.delete(ids=dropping_document[start : start + max_batch])
    for id_ in dropping_document:
        current.pop(id_, None)

    for batch in _batches(puts, max_batch):
        _upsert(collection, batch, current, result)

    ledger.record(
        (
            id_,
            Entry(
                e.rev,
                deleted=e.kind is EffectKind.DELETE,
                deleted_at=now if e.kind is EffectKind.DELETE else None,
            ),
        )
        for id_, e in result.applied.items()
    )
    return result


def _resolve_patch(patch: Effect, existing: dict[str, Any]) -> Effect:
    return Effect(
        id=patch.id,
        kind=EffectKind.PUT,
        rev=patch.rev,
        embedding=np.asarray(existing["embedding"], dtype="<f4").tobytes(),
        document=patch.document if patch.sets_document else existing["document"],
        metadata=patch.metadata if patch.sets_metadata else existing["metadata"],
    )


def _upsert(
    collection: Any, batch: list[Effect], current: dict[str, dict[str, Any]], result: ApplyResult
) -> None:
    def call(effects: list[Effect]) -> None:
        collection.upsert(
            ids=[e.id for e in effects],
            embeddings=np.stack([np.frombuffer(e.embedding or b"", dtype="<f4") for e in effects]),
            documents=[e.document for e in effects],
            metadatas=[_replacing(e.metadata, current.get(e.id)) for e in effects],
        )

    try:
        call(batch)
        done = batch
    except _REJECTED:
        # One bad record fails Chroma's whole call: retry one by one to isolate it.
        done = []
        for effect in batch:
            try:
                call([effect])
                done.append(effect)
            except _REJECTED as error:
                result.failed[effect.id] = f"chroma rejected {effect.id!r}: {error}"
    result.upserted += len(done)
    for effect in done:
        result.applied[effect.id] = effect


def _replacing(new: Metadata | None, existing: dict[str, Any] | None) -> dict[str, Any] | None:
    """The metadata argument that makes the stored map equal ``new`` (Chroma merges maps)."""
    merged: dict[str, Any] = dict.fromkeys((existing or {}).get("metadata") or {})
    merged.update(new or {})
    return merged or None


def _get(collection: Any, ids: list[str], max_batch: int) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), max_batch):
        got = collection.get(
            ids=ids[start : start + max_batch], include=["embeddings", "documents", "metadatas"]
        )
        for i, id_ in enumerate(got["ids"]):
            found[id_] = {
                "embedding": got["embeddings"][i],
                "document": got["documents"][i],
                "metadata": got["metadatas"][i],
            }
    return found


def _batches(effects: list[Effect], size: int) -> list[list[Effect]]:
    return [effects[i : i + size] for i in range(0, len(effects), size)]
