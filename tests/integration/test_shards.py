"""Sharded collections: each shard its own partition; queries fan out and merge top-k."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from chroma_compactor import ops
from chroma_compactor.errors import CommitRejected
from chroma_compactor.pollers import LambdaContext
from chroma_compactor.query import QueryEngine, query
from chroma_compactor.shards import Layout
from support import snapshot_state, vector

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.reader import Reader
    from support import Pipeline

RECORDS = 60


def _write(pipeline: Pipeline, collection: str, n: int = RECORDS) -> None:
    pipeline.send(
        *(
            ops.upsert(collection, f"id{i}", 1, vector(i), document=f"d{i}", metadata={"i": i})
            for i in range(n)
        )
    )


@pytest.fixture
def sharded(pipeline: Pipeline) -> Pipeline:
    """ "flat" unsharded and "split" in 4 shards, holding the same records, both compacted."""
    pipeline.settings = pipeline.settings.model_copy(update={"collection_shards": {"split": 4}})
    _write(pipeline, "flat")
    _write(pipeline, "split")
    pipeline.drain(pipeline.compactor("a"))
    return pipeline


def test_each_shard_is_its_own_partition_with_its_own_pointer(
    sharded: Pipeline, reader: Reader
) -> None:
    layout = Layout("split", 4)
    states = {p: snapshot_state(reader, p) for p in layout.partitions}

    assert all(reader.pointers.read(p).version >= 1 for p in layout.partitions)
    assert sum(len(s) for s in states.values()) == RECORDS
    for partition, state in states.items():
        assert all(layout.partition_of(id_) == partition for id_ in state)
    assert reader.pointers.read("split").version == 0  # no unsharded partition


def test_sharded_results_equal_unsharded_results(sharded: Pipeline, reader: Reader) -> None:
    for probe in (0, 17, 42):
        flat = query(reader, "flat", vector=vector(probe).tolist(), k=10)
        split = query(reader, "split", vector=vector(probe).tolist(), k=10)

        assert [h.id for h in split] == [h.id for h in flat]
        assert [h.distance for h in split] == pytest.approx([h.distance for h in flat], abs=1e-5)
        assert split[0].id == f"id{probe}"


def test_query_by_id_finds_the_record_in_its_shard(sharded: Pipeline, reader: Reader) -> None:
    hits = query(reader, "split", id="id33", k=3)

    assert hits[0].id == "id33"
    assert hits[0].distance == pytest.approx(0, abs=1e-5)


def test_a_where_filter_applies_on_every_shard(sharded: Pipeline, reader: Reader) -> None:
    hits = query(reader, "split", vector=vector(5).tolist(), k=100, where={"i": {"$lt": 10}})

    assert sorted(h.id for h in hits) == sorted(f"id{i}" for i in range(10))


def test_the_engine_reopens_a_shard_only_when_its_pointer_moves(
    sharded: Pipeline, reader: Reader, tmp_path: Path
) -> None:
    engine = QueryEngine(reader, tmp_path / "engine")
    engine.query("split", vector=vector(1).tolist(), k=5)
    engine.query("split", vector=vector(2).tolist(), k=5)
    assert engine.refreshes == 4  # each shard opened once, then served warm

    moved = Layout("split", 4).partition_of("id0")
    sharded.send(ops.upsert("split", "id0", 2, vector(999), document="moved"))
    sharded.drain(sharded.compactor("a"))
    (hit,) = engine.query("split", vector=vector(999).tolist(), k=1)

    assert (hit.id, hit.document) == ("id0", "moved")
    assert engine.refreshes == 5  # only the shard that changed
    assert reader.pointers.read(moved).version == 2
    engine.close()


def test_an_existing_unsharded_collection_keeps_one_shard_when_config_changes(
    pipeline: Pipeline, reader: Reader
) -> None:
    _write(pipeline, "legacy", 5)
    pipeline.drain(pipeline.compactor("a"))
    pipeline.settings = pipeline.settings.model_copy(update={"collection_shards": {"legacy": 4}})
    pipeline.send(ops.upsert("legacy", "new", 1, vector(100)))
    pipeline.drain(pipeline.compactor("a"))

    assert reader.layouts.read("legacy") == Layout("legacy", 1)
    assert set(snapshot_state(reader, "legacy")) == {f"id{i}" for i in range(5)} | {"new"}


def test_a_retired_partition_refuses_commits(pipeline: Pipeline, reader: Reader) -> None:
    """A compactor still routing by an old layout cannot commit after a reshard retired it."""
    _write(pipeline, "old", 3)
    pipeline.drain(pipeline.compactor("a"))
    pipeline.clients.dynamodb.update_item(
        TableName=pipeline.names.control_table,
        Key={"pk": {"S": "pointer#old"}},
        UpdateExpression="SET retired = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    c = pipeline.compactor("a")
    lease = c.leases.acquire_waiting("old", c.owner, 30, 0)

    with pytest.raises(CommitRejected):
        c.pointers.commit(
            c.leases, lease, expected_version=1, new_version=2, manifest_key="k", record_count=4
        )


def _url_event(body: dict[str, Any]) -> dict[str, Any]:
    return {"requestContext": {"http": {"method": "POST"}}, "body": json.dumps(body)}


def test_the_query_handler_answers_direct_and_function_url_invocations(
    sharded: Pipeline, cli_env: Pipeline
) -> None:
    import query_handler

    query_handler._engine.cache_clear()
    context: Any = LambdaContext("query")
    direct = query_handler.handler({"collection": "split", "id": "id3", "k": 2}, context)
    via_url = query_handler.handler(
        _url_event({"collection": "split", "vector": vector(3).tolist(), "k": 2}), context
    )

    assert direct["statusCode"] == 200
    assert [h["id"] for h in direct["hits"]] == ["id3", "id36"]
    assert via_url["statusCode"] == 200
    assert [h["id"] for h in json.loads(via_url["body"])["hits"]] == ["id3", "id36"]
    query_handler._engine().close()
    query_handler._engine.cache_clear()


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        ({"collection": "split"}, 400),
        ({"collection": "split", "id": "x", "vector": [1.0]}, 400),
        ({"collection": "split", "id": "id1", "k": 0}, 400),
        ({"collection": "nothing-here", "vector": [0.0] * 8}, 404),
    ],
)
def test_the_query_handler_refuses_bad_requests_with_a_reason(
    sharded: Pipeline, cli_env: Pipeline, request_: dict[str, Any], status: int
) -> None:
    import query_handler

    query_handler._engine.cache_clear()
    response = query_handler.handler(_url_event(request_), LambdaContext("query"))  # type: ignore[arg-type]

    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"]
    query_handler._engine().close()
    query_handler._engine.cache_clear()
