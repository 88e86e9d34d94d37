"""Nearest neighbours in a collection's current snapshot, always by vector.

Querying by text would make Chroma load its default embedding model (a download); a query by id
uses that record's own embedding instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chroma_compactor.errors import CompactorError

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader


@dataclass(frozen=True)
class Hit:
    id: str
    distance: float
    document: str | None
    metadata: dict[str, Any] | None


def query(
    reader: Reader,
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
    with reader.open(collection) as col:
        if id is not None:
            got = col.get(ids=[id], include=["embeddings"])
            if not got["ids"]:
                raise CompactorError(f"{collection!r} has no record {id!r}")
            vector = [float(x) for x in got["embeddings"][0]]
        count = col.count()
        if count == 0:
            return []
        result = col.query(
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
