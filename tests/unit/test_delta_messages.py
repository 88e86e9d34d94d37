"""Bulk loads on the wire: the delta op, the run item's stream record, and what validation keeps."""

from __future__ import annotations

import base64
import itertools
from typing import TYPE_CHECKING, Any

import pytest

from chroma_compactor import ops
from chroma_compactor.delta import BULK_RUN, RUN, run_item
from chroma_compactor.errors import ConfigurationError, InvalidMessage
from chroma_compactor.forwarder import forward, operation_from_record
from chroma_compactor.merge import Effect, EffectKind
from chroma_compactor.settings import QueueType, Settings
from chroma_compactor.validate import EffectSample
from support import vector

if TYPE_CHECKING:
    from support import Pipeline

_seq = itertools.count(1)
REF = ops.DeltaRef(bucket="b", key="deltas/docs/r1.ndjson.gz", sha256="ab" * 32, size=10, records=3)


def _stream_record(event: str, image: dict[str, Any], id_: str) -> dict[str, Any]:
    keys = {"collection": {"S": "docs"}, "id": {"S": id_}}
    seq = str(next(_seq))
    side = "OldImage" if event == "REMOVE" else "NewImage"
    return {
        "eventID": f"event-{seq}",
        "eventName": event,
        "dynamodb": {"Keys": keys, "SequenceNumber": seq, side: keys | image},
    }


def _run_record(event: str = "INSERT") -> dict[str, Any]:
    item = run_item("docs", "r1", REF)
    return _stream_record(event, {RUN: item[RUN]}, item["id"]["S"])


def _bulk_image(id_: str) -> dict[str, Any]:
    embedding = base64.b64encode(vector(1).tobytes()).decode("ascii")
    return {"rev": {"N": "5"}, "embedding": {"B": embedding}, BULK_RUN: {"S": "r1"}}


def _received(pipeline: Pipeline) -> list[dict[str, Any]]:
    return pipeline.clients.sqs.receive_message(
        QueueUrl=pipeline.created.queue_url,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
    ).get("Messages", [])


# -- the op -------------------------------------------------------------------------------------


def test_a_delta_round_trips_through_the_wire_format() -> None:
    op = ops.delta("docs", "r1", REF.model_copy(update={"shard": 1, "shards": 2}))

    assert ops.decode(ops.encode(op)) == op


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"delta": None}, "only a delta carries 'delta'"),
        ({"document": "x"}, "carries a record's payload"),
        ({"delta": REF.model_copy(update={"shard": 2, "shards": 2})}, "shard 2 of 2"),
    ],
)
def test_a_malformed_delta_is_refused(change: dict[str, Any], reason: str) -> None:
    op = ops.delta("docs", "r1", REF).model_copy(update=change)

    with pytest.raises(InvalidMessage, match=reason):
        ops.decode(ops.encode(op))


def test_an_upsert_carrying_a_delta_ref_is_refused() -> None:
    op = ops.upsert("docs", "a", 1, vector(1)).model_copy(update={"delta": REF})

    with pytest.raises(InvalidMessage, match="only a delta carries 'delta'"):
        ops.decode(ops.encode(op))


# -- the forwarder ------------------------------------------------------------------------------


@pytest.mark.parametrize("queue_type", [QueueType.FIFO], indirect=True)
def test_a_run_item_becomes_one_delta_per_shard_each_in_its_shards_fifo_group(
    pipeline: Pipeline,
) -> None:
    settings = pipeline.settings.model_copy(update={"collection_shards": {"docs": 2}})

    result = forward(pipeline.clients.sqs, settings, [_run_record()])

    messages = _received(pipeline)
    assert result.sent == 2 and len(messages) == 2
    by_shard = {ops.decode(m["Body"]).delta.shard: m["Attributes"] for m in messages}  # type: ignore[union-attr]
    assert {s: a["MessageGroupId"] for s, a in by_shard.items()} == {
        0: "compaction:docs:0",
        1: "compaction:docs:1",
    }
    assert len({a["MessageDeduplicationId"] for a in by_shard.values()}) == 2


@pytest.mark.parametrize("event", ["MODIFY", "REMOVE"])
def test_a_run_item_is_announced_by_its_insert_only(pipeline: Pipeline, event: str) -> None:
    result = forward(pipeline.clients.sqs, pipeline.settings, [_run_record(event)])

    assert (result.sent, result.skipped) == (0, 1)


def test_an_image_a_delta_carries_is_skipped_but_its_removal_is_forwarded(
    pipeline: Pipeline,
) -> None:
    records = [
        _stream_record("INSERT", _bulk_image("a"), "a"),
        _stream_record("MODIFY", _bulk_image("b"), "b"),
        _stream_record("REMOVE", _bulk_image("c"), "c"),
    ]

    result = forward(pipeline.clients.sqs, pipeline.settings, records)

    assert (result.sent, result.skipped) == (1, 2)
    (message,) = _received(pipeline)
    assert ops.decode(message["Body"]) == ops.delete("docs", "c", 5)


def test_a_rebuild_reads_a_bulk_loaded_record_and_skips_the_run_item() -> None:
    assert operation_from_record(_stream_record("INSERT", _bulk_image("a"), "a")) == ops.upsert(
        "docs", "a", 5, vector(1)
    )
    assert operation_from_record(_run_record()) is None


# -- validation's sample ------------------------------------------------------------------------


def _effect(id_: str, rev: int = 1) -> Effect:
    return Effect(id_, EffectKind.PUT, rev, vector(rev).tobytes())


def test_an_effect_sample_keeps_at_most_its_size_drawn_from_all_it_saw() -> None:
    sample = EffectSample(100, seed=1)
    for start in range(0, 10_000, 1_000):
        sample.add({f"id{i}": _effect(f"id{i}") for i in range(start, start + 1_000)})

    kept = [int(id_.removeprefix("id")) for id_ in sample.effects]
    assert len(kept) == 100
    assert min(kept) < 2_000 and max(kept) >= 8_000  # not just the first or the last ones


def test_an_effect_sample_keeps_the_latest_effect_of_an_id_it_holds() -> None:
    sample = EffectSample(10)
    sample.add({"a": _effect("a", 1)})
    sample.add({"a": _effect("a", 2)})

    assert sample.effects == {"a": _effect("a", 2)}


def test_snapshots_may_not_share_the_prefix_where_deltas_expire() -> None:
    env = {"CONTROL_TABLE_NAME": "c", "SNAPSHOT_BUCKET": "b", "SNAPSHOT_PREFIX": "deltas/"}

    with pytest.raises(ConfigurationError, match="SNAPSHOT_PREFIX may not be 'deltas'"):
        Settings.from_env(env)
