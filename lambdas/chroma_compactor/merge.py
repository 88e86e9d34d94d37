"""Coalesce a batch of operations into one final effect per id, against the ledger.

Pure functions, no I/O: this is where "any set of messages, each any number of times, in any
order, gives the same snapshot" is decided, so it is tested without Chroma or AWS.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from chroma_compactor.ops import Metadata, Operation, OpKind

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from chroma_compactor.ledger import Entry


class EffectKind(StrEnum):
    PUT = "put"  # the record's whole state
    PATCH = "patch"  # replace document and/or metadata of an existing record
    DELETE = "delete"


@dataclass(frozen=True)
class Effect:
    id: str
    kind: EffectKind
    rev: int
    embedding: bytes | None = None
    document: str | None = None
    metadata: Metadata | None = None
    # For PATCH: which fields the patch replaces (a None document may mean "remove it").
    sets_document: bool = False
    sets_metadata: bool = False


@dataclass
class Plan:
    effects: dict[str, Effect] = field(default_factory=dict)
    stale: int = 0  # ops not newer than the ledger or than another op of the batch (duplicates)
    coalesced: int = 0  # ops folded into a later op of the same id
    not_found: int = 0  # updates of ids that do not exist (or were deleted)
    ops: int = 0


def plan(ops: Iterable[Operation], ledger: Mapping[str, Entry]) -> Plan:
    """Fold ``ops`` into one effect per id. ``ledger`` holds the entries of (at least) their ids."""
    by_id: dict[str, list[Operation]] = defaultdict(list)
    result = Plan()
    for op in ops:
        by_id[op.id].append(op)
        result.ops += 1
    for id_, id_ops in by_id.items():
        _plan_one(id_, id_ops, ledger.get(id_), result)
    return result


def _plan_one(id_: str, ops: list[Operation], entry: Entry | None, result: Plan) -> None:
    floor = entry.sort_key() if entry is not None else None
    fresh: list[Operation] = []
    seen: set[tuple[int, int]] = set()
    for op in sorted(ops, key=Operation.sort_key):
        key = op.sort_key()
        if (floor is not None and key <= floor) or key in seen:
            result.stale += 1
            continue
        seen.add(key)
        fresh.append(op)
    if not fresh:
        return

    exists = entry is not None and not entry.deleted
    effect: Effect | None = None
    folded = 0
    for op in fresh:
        if op.op is OpKind.UPSERT:
            effect = Effect(id_, EffectKind.PUT, op.rev, op.embedding, op.document, op.metadata)
        elif op.op is OpKind.DELETE:
            effect = Effect(id_, EffectKind.DELETE, op.rev)
        elif effect is not None and effect.kind is not EffectKind.DELETE:
            effect = _patched(effect, op)
        elif effect is None and exists:
            effect = _patched(Effect(id_, EffectKind.PATCH, op.rev), op)
        else:
            result.not_found += 1
            continue
        folded += 1
    if effect is None:
        return
    # A delete of an id we never had is still an effect: its tombstone stops an older upsert.
    result.coalesced += folded - 1
    result.effects[id_] = effect


def _patched(base: Effect, op: Operation) -> Effect:
    sets_document = op.document is not None
    sets_metadata = op.metadata is not None
    return Effect(
        id=base.id,
        kind=base.kind,
        rev=op.rev,
        embedding=base.embedding,
        document=op.document if sets_document else base.document,
        metadata=op.metadata if sets_metadata else base.metadata,
        sets_document=base.sets_document or sets_document,
        sets_metadata=base.sets_metadata or sets_metadata,
    )
