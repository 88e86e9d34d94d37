"""The three operations that reach the compactor, and their wire format on the queue.

A message body is one JSON object::

    {"v": 1, "op": "upsert", "collection": "docs", "id": "a1", "rev": 7,
     "embedding": "<base64 of float32 little-endian>", "document": "...", "metadata": {...}}

``embedding`` may also be a JSON list of numbers. ``update`` carries ``metadata`` and/or
``document`` (each, when present, replaces the stored value whole); ``delete`` carries neither.
``delta`` names a bulk load's records in S3 instead of carrying one (see delta.py)::

    {"v": 1, "op": "delta", "collection": "docs", "id": "<run id>", "rev": 0,
     "delta": {"bucket": "...", "key": "...", "sha256": "...", "size": 123, "records": 50000,
               "shard": 0, "shards": 2}}
Embeddings stay packed float32 bytes from the wire to Chroma: a 1536-dim vector is 6 KiB that way,
~40 KiB as Python floats.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from chroma_compactor.errors import InvalidMessage

SCHEMA_VERSION = 1
# Chroma's own limits on collection names.
COLLECTION_NAME_MIN, COLLECTION_NAME_MAX = 3, 512
# Chroma's rule: letters, digits, '.', '_', '-'; starting and ending with a letter or digit.
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$"
# Shards are stored as collections named <collection>.s<i>-of-<n> (see shards.py).
RESERVED_SUFFIX = re.compile(r"\.s\d+-of-\d+$")
MAX_DOCUMENT_BYTES = 256 * 1024
# Metadata is filtered on, not stored in bulk: a bound keeps one record from bloating the SQLite
# metadata segment (and, with the document, keeps a message under SQS's 256 KiB).
MAX_METADATA_BYTES = 64 * 1024
# A whole encoded message: SQS's default MaximumMessageSize, which every queue accepts whatever
# its provider's default (a larger body fails the whole SendMessageBatch call, not one entry).
MAX_MESSAGE_BYTES = 256 * 1024

MetadataValue = StrictStr | StrictBool | StrictInt | StrictFloat
Metadata = dict[str, MetadataValue]


class OpKind(StrEnum):
    UPSERT = "upsert"
    UPDATE = "update"
    DELETE = "delete"
    DELTA = "delta"  # a bulk load: many upserts in one S3 object


class DeltaRef(BaseModel):
    """Where a bulk load's records wait, and which of them this message is for: the records
    whose ``shard_of(id, shards) == shard`` (one message per shard of a sharded collection)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0)]  # of the object, in bytes
    records: Annotated[int, Field(ge=0)]
    shard: Annotated[int, Field(ge=0)] = 0
    shards: Annotated[int, Field(ge=1)] = 1


class Operation(BaseModel):
    """One write to one record at one rev; the unit the ledger orders."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = SCHEMA_VERSION
    op: OpKind
    collection: Annotated[
        str,
        Field(
            min_length=COLLECTION_NAME_MIN,
            max_length=COLLECTION_NAME_MAX,
            pattern=COLLECTION_NAME_PATTERN,
        ),
    ]
    id: Annotated[str, Field(min_length=1)]
    rev: Annotated[int, Field(ge=0)]
    embedding: bytes | None = None  # float32 little-endian
    document: str | None = None
    metadata: Metadata | None = None
    delta: DeltaRef | None = None

    @field_validator("collection")
    @classmethod
    def _not_a_partition_name(cls, value: str) -> str:
        if RESERVED_SUFFIX.search(value):
            raise ValueError(
                "names ending in '.s<i>-of-<n>' are reserved for the shards of a collection"
            )
        return value

    @property
    def dimension(self) -> int | None:
        return None if self.embedding is None else len(self.embedding) // 4

    def vector(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        if self.embedding is None:
            raise ValueError(f"{self.op} of {self.id!r} has no embedding")
        return np.frombuffer(self.embedding, dtype="<f4")

    def sort_key(self) -> tuple[int, int]:
        """Order of ops on one id: by rev; at equal rev a delete wins (it saw that rev's state)."""
        return (self.rev, 1 if self.op is OpKind.DELETE else 0)


def upsert(
    collection: str,
    id: str,
    rev: int,
    embedding: bytes | list[float] | np.ndarray[Any, Any],
    document: str | None = None,
    metadata: Metadata | None = None,
) -> Operation:
    return Operation(
        op=OpKind.UPSERT,
        collection=collection,
        id=id,
        rev=rev,
        embedding=pack_embedding(embedding),
        document=document,
        metadata=metadata,
    )


def update(
    collection: str,
    id: str,
    rev: int,
    document: str | None = None,
    metadata: Metadata | None = None,
) -> Operation:
    return Operation(
        op=OpKind.UPDATE,
        collection=collection,
        id=id,
        rev=rev,
        document=document,
        metadata=metadata,
    )


def delete(collection: str, id: str, rev: int) -> Operation:
    return Operation(op=OpKind.DELETE, collection=collection, id=id, rev=rev)


def delta(collection: str, run_id: str, ref: DeltaRef) -> Operation:
    return Operation(op=OpKind.DELTA, collection=collection, id=run_id, rev=0, delta=ref)


def pack_embedding(value: bytes | list[float] | np.ndarray[Any, Any]) -> bytes:
    if isinstance(value, bytes):
        return value
    return np.asarray(value, dtype="<f4").tobytes()


def checked(op: Operation) -> Operation:
    """``op`` as the compactor will read it, or InvalidMessage: a round trip through the wire
    format checks every limit a message must keep, SQS's size included."""
    return _checked(op)[1]


def checked_body(op: Operation) -> str:
    """``op``'s message body, once it passes the checks of ``checked``."""
    return _checked(op)[0]


def _checked(op: Operation) -> tuple[str, Operation]:
    body = encode(op)
    size = len(body.encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise InvalidMessage(
            f"operation of {op.id!r} encodes to {size} bytes, over SQS's {MAX_MESSAGE_BYTES}"
        )
    return body, decode(body)


def encode(op: Operation) -> str:
    """The JSON body of a queue message for ``op``."""
    body: dict[str, object] = {
        "v": op.v,
        "op": op.op.value,
        "collection": op.collection,
        "id": op.id,
        "rev": op.rev,
    }
    if op.embedding is not None:
        body["embedding"] = base64.b64encode(op.embedding).decode("ascii")
    if op.document is not None:
        body["document"] = op.document
    if op.metadata is not None:
        body["metadata"] = op.metadata
    if op.delta is not None:
        body["delta"] = op.delta.model_dump()
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def decode(body: str) -> Operation:
    """Parse and check a message body; raise InvalidMessage with a reason an operator can act on."""
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidMessage(f"body is not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise InvalidMessage(f"body is a JSON {type(raw).__name__}, not an object")
    version = raw.get("v", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidMessage(
            f"schema version {version!r} is not a version (expected 1..{SCHEMA_VERSION})"
        )
    if version > SCHEMA_VERSION:
        raise InvalidMessage(
            f"schema version {version!r} is newer than this compactor understands "
            f"({SCHEMA_VERSION}); upgrade the compactor, then redrive the DLQ"
        )
    if "embedding" in raw and raw["embedding"] is not None:
        raw["embedding"] = _decode_embedding(raw["embedding"])
    try:
        op = Operation.model_validate(raw)
    except PydanticValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
        )
        raise InvalidMessage(f"invalid operation: {problems}") from None
    _check_shape(op)
    return op


def _decode_embedding(value: object) -> bytes:
    if isinstance(value, str):
        try:
            packed = base64.b64decode(value, validate=True)
        except binascii.Error as e:
            raise InvalidMessage(f"embedding is not base64: {e}") from None
        if len(packed) % 4:
            raise InvalidMessage(
                f"embedding has {len(packed)} bytes, not a whole number of float32"
            )
        return packed
    if isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        return np.asarray(value, dtype="<f4").tobytes()
    raise InvalidMessage("embedding must be base64 float32 or a list of numbers")


def _check_delta(op: Operation) -> None:
    if op.embedding is not None or op.metadata is not None or op.document is not None:
        raise InvalidMessage(f"delta {op.id!r} carries a record's payload")
    if op.delta is not None and op.delta.shard >= op.delta.shards:
        raise InvalidMessage(f"delta {op.id!r} is for shard {op.delta.shard} of {op.delta.shards}")


def _check_shape(op: Operation) -> None:
    if (op.op is OpKind.DELTA) != (op.delta is not None):
        raise InvalidMessage(f"{op.op} of {op.id!r}: only a delta carries 'delta', and it must")
    if op.op is OpKind.DELTA:
        _check_delta(op)
        return
    if op.op is OpKind.UPSERT:
        if not op.embedding:
            raise InvalidMessage(f"upsert of {op.id!r} has no embedding")
    elif op.op is OpKind.UPDATE:
        if op.embedding is not None:
            raise InvalidMessage(f"update of {op.id!r} carries an embedding; send an upsert")
        if op.metadata is None and op.document is None:
            raise InvalidMessage(f"update of {op.id!r} changes nothing (no metadata, no document)")
    elif op.embedding is not None or op.metadata is not None or op.document is not None:
        raise InvalidMessage(f"delete of {op.id!r} carries a payload")
    if op.embedding is not None and not np.isfinite(op.vector()).all():
        raise InvalidMessage(f"embedding of {op.id!r} contains NaN or infinity")
    if op.document is not None and len(op.document.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise InvalidMessage(f"document of {op.id!r} is over {MAX_DOCUMENT_BYTES} bytes")
    if op.metadata and len(json.dumps(op.metadata).encode("utf-8")) > MAX_METADATA_BYTES:
        raise InvalidMessage(f"metadata of {op.id!r} is over {MAX_METADATA_BYTES} bytes as JSON")
    for key, value in (op.metadata or {}).items():
        if not key or key.startswith("chroma:"):
            raise InvalidMessage(f"metadata key {key!r} of {op.id!r} is reserved or empty")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidMessage(f"metadata {key!r} of {op.id!r} is NaN or infinity")
