"""ops: the wire format of a queue message, and the reasons a body is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from chroma_compactor import ops
from chroma_compactor.errors import InvalidMessage

_DROP = object()


def _body(**fields: Any) -> str:
    """A valid upsert body with ``fields`` replaced (or removed, given ``_DROP``)."""
    raw: dict[str, Any] = {
        "v": 1,
        "op": "upsert",
        "collection": "docs",
        "id": "a1",
        "rev": 1,
        "embedding": [0.5, 1.5, -2.0, 4.0],
    }
    raw.update(fields)
    return json.dumps({k: v for k, v in raw.items() if v is not _DROP})


@pytest.mark.parametrize(
    "op",
    [
        ops.upsert(
            "docs",
            "a1",
            7,
            np.array([0.25, -1.5, 3.0, 1e-3], dtype=np.float32),
            document="héllo",
            metadata={"lang": "en", "n": 3, "score": 0.5, "ok": True},
        ),
        ops.update("docs", "a1", 8, document="new", metadata={"k": "v"}),
        ops.update("docs", "a1", 9, metadata={}),
        ops.delete("docs", "a1", 10),
    ],
    ids=["upsert", "update", "update-clearing-metadata", "delete"],
)
def test_encode_then_decode_gives_the_same_operation(op: ops.Operation) -> None:
    assert ops.decode(ops.encode(op)) == op


def test_an_upsert_is_encoded_with_a_base64_float32_embedding() -> None:
    op = ops.upsert("docs", "a1", 1, [1.0, 2.0])

    body = json.loads(ops.encode(op))

    assert base64.b64decode(body["embedding"]) == np.array([1.0, 2.0], dtype="<f4").tobytes()


def test_an_embedding_given_as_a_list_of_numbers_decodes_to_float32() -> None:
    op = ops.decode(_body(embedding=[0.5, 1, -2.0, 4.0]))

    assert op.vector().tolist() == [0.5, 1.0, -2.0, 4.0]
    assert op.dimension == 4
    assert ops.decode(ops.encode(op)) == op


def test_a_body_without_a_schema_version_is_read_as_version_1() -> None:
    assert ops.decode(_body(v=_DROP)).v == 1


def test_a_document_of_exactly_the_size_limit_is_accepted() -> None:
    document = "x" * ops.MAX_DOCUMENT_BYTES

    assert ops.decode(_body(document=document)).document == document


_NAN_BASE64 = base64.b64encode(np.array([1.0, np.nan], dtype="<f4").tobytes()).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param("{this is not json", "body is not JSON", id="non-json"),
        pytest.param("[1, 2]", "body is a JSON list, not an object", id="json-array"),
        pytest.param(_body(op="merge"), "op: Input should be 'upsert'", id="unknown-op"),
        pytest.param(_body(id=_DROP), "id: Field required", id="missing-id"),
        pytest.param(_body(id=""), "id: String should have at least 1 character", id="empty-id"),
        pytest.param(
            _body(rev=-1), "rev: Input should be greater than or equal to 0", id="negative-rev"
        ),
        pytest.param(_body(v=99), "schema version 99 is newer", id="future-schema"),
        pytest.param(
            _body(embedding=[1.0, float("nan")]), "contains NaN or infinity", id="nan-in-list"
        ),
        pytest.param(_body(embedding=_NAN_BASE64), "contains NaN or infinity", id="nan-in-base64"),
        pytest.param(_body(embedding="AAAA!"), "embedding is not base64", id="bad-base64"),
        pytest.param(
            _body(embedding=base64.b64encode(b"12345").decode()),
            "not a whole number of float32",
            id="ragged-embedding",
        ),
        pytest.param(_body(embedding=_DROP), "upsert of 'a1' has no embedding", id="no-embedding"),
        pytest.param(_body(embedding=[]), "upsert of 'a1' has no embedding", id="empty-embedding"),
        pytest.param(
            _body(op="update", embedding=_DROP), "update of 'a1' changes nothing", id="empty-update"
        ),
        pytest.param(
            _body(op="update", document="d"),
            "update of 'a1' carries an embedding",
            id="update-with-embedding",
        ),
        pytest.param(
            _body(op="delete", embedding=_DROP, document="d"),
            "delete of 'a1' carries a payload",
            id="delete-with-payload",
        ),
        pytest.param(
            _body(collection="ab"),
            "collection: String should have at least 3 characters",
            id="collection-too-short",
        ),
        pytest.param(
            _body(collection="my docs"),
            "collection: String should match pattern",
            id="collection-illegal-characters",
        ),
        pytest.param(
            _body(document="x" * (ops.MAX_DOCUMENT_BYTES + 1)),
            f"document of 'a1' is over {ops.MAX_DOCUMENT_BYTES} bytes",
            id="oversized-document",
        ),
        pytest.param(
            _body(document="é" * (ops.MAX_DOCUMENT_BYTES // 2 + 1)),
            f"document of 'a1' is over {ops.MAX_DOCUMENT_BYTES} bytes",
            id="oversized-document-in-utf8-bytes",
        ),
        pytest.param(
            _body(metadata={"blob": "x" * ops.MAX_METADATA_BYTES}),
            f"metadata of 'a1' is over {ops.MAX_METADATA_BYTES} bytes",
            id="oversized-metadata",
        ),
        pytest.param(
            _body(metadata={"nested": {"a": 1}}), "metadata.nested", id="nested-metadata-value"
        ),
        pytest.param(
            _body(collection="docs.s1-of-4"), "reserved for the shards", id="shard-name-collection"
        ),
        pytest.param(
            _body(metadata={"chroma:document": "x"}), "reserved or empty", id="reserved-metadata"
        ),
        pytest.param(
            _body(metadata={"score": float("nan")}), "is NaN or infinity", id="nan-metadata"
        ),
        pytest.param(
            _body(metadata={"tags": ["a", "b"]}), "metadata.tags", id="list-metadata-value"
        ),
        pytest.param(_body(extra=1), "extra: Extra inputs are not permitted", id="unknown-field"),
    ],
)
def test_an_invalid_body_is_refused_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        ops.decode(body)

    assert reason in str(refused.value)
