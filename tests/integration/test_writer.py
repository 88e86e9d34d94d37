"""The writer client against moto: batching, backpressure, retries, drain, and revs that keep the
snapshot equal to the table when several writers delete and re-create the same ids."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from botocore.awsrequest import AWSResponse

from chroma_compactor.writer import (
    MAX_BATCH,
    HybridClock,
    InvalidRecord,
    WriteFailure,
    Writer,
    WriterClosed,
    WriterFull,
)
from faults import FirstRequestsFail, FlakyAws
from support import assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from chroma_compactor.wiring import Clients
    from support import Pipeline


def _writer(pipeline: Pipeline, **options: Any) -> Writer:
    return Writer(pipeline.names.source_table, "docs", client=pipeline.clients.dynamodb, **options)


def _requests(pipeline: Pipeline, operation: str) -> list[int]:
    """How many items each request of ``operation`` carried (1 for a single-item call)."""
    sizes: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        items = params.get("RequestItems")
        sizes.extend([len(v) for v in items.values()] if items else [1])

    pipeline.clients.dynamodb.meta.events.register(
        f"provide-client-params.dynamodb.{operation}", record
    )
    return sizes


def _gate(pipeline: Pipeline) -> threading.Event:
    """Holds every DynamoDB request until the returned event is set."""
    gate = threading.Event()
    pipeline.clients.dynamodb.meta.events.register(
        "before-call.dynamodb", lambda **_: gate.wait(10) and None
    )
    return gate


def _leave_unprocessed(pipeline: Pipeline, times: int) -> None:
    """DynamoDB hands back every item of the next ``times`` BatchWriteItem calls unprocessed."""
    left = iter(range(times))

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        if next(left, None) is None:
            return None
        items = json.loads(params["body"])["RequestItems"]
        return AWSResponse(params["url"], 200, {}, None), {"UnprocessedItems": items}

    pipeline.clients.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", refuse)


def _converge(pipeline: Pipeline, reader: Reader) -> None:
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))
    assert_same_records(snapshot_state(reader, "docs"), pipeline.table_state("docs"))


# -- batching --------------------------------------------------------------------------------


def test_batch_mode_sends_batch_write_items_of_up_to_25(pipeline: Pipeline) -> None:
    sizes = _requests(pipeline, "BatchWriteItem")
    with _writer(pipeline, mode="batch", max_delay_s=5) as writer:
        for i in range(60):
            writer.upsert(f"id{i}", vector(i), document=f"d{i}")

    assert (writer.stats().written, sum(sizes), max(sizes)) == (60, 60, MAX_BATCH)
    assert len(pipeline.table_state("docs")) == 60


def test_conditional_mode_sends_one_conditional_put_per_record(pipeline: Pipeline) -> None:
    conditions: list[str] = []
    pipeline.clients.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.PutItem",
        lambda params, **_: conditions.append(params["ConditionExpression"]),
    )
    with _writer(pipeline, max_delay_s=5) as writer:
        for i in range(30):
            writer.upsert(f"id{i}", vector(i))

    assert len(conditions) == 30
    assert set(conditions) == {"attribute_not_exists(#id) OR #rev < :rev"}
    assert len(pipeline.table_state("docs")) == 30


def test_a_lone_write_goes_out_after_max_delay_without_a_flush(pipeline: Pipeline) -> None:
    writer = _writer(pipeline, max_delay_s=0.05)
    writer.upsert("only", vector(1))
    deadline = time.monotonic() + 5
    while writer.stats().written == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert writer.stats().written == 1
    assert 0 < writer.stats().mean_latency_ms < 5000
    writer.close()


def test_flush_sends_a_partial_batch_at_once(pipeline: Pipeline) -> None:
    writer = _writer(pipeline, max_delay_s=60)
    for i in range(3):
        writer.upsert(f"id{i}", vector(i))
    started = time.monotonic()

    assert writer.flush(timeout=10)
    assert time.monotonic() - started < 5
    assert len(pipeline.table_state("docs")) == 3
    writer.close()


# -- backpressure ----------------------------------------------------------------------------


def test_a_full_buffer_raises_when_told_to(pipeline: Pipeline) -> None:
    gate = _gate(pipeline)
    writer = _writer(pipeline, buffer_size=2, batch_size=1, on_full="raise")
    try:
        with pytest.raises(WriterFull, match="buffer full"):
            for i in range(10):
                writer.upsert(f"id{i}", vector(i))
    finally:
        gate.set()
        assert writer.close(timeout=10)
    assert 2 <= writer.stats().written == writer.stats().enqueued < 10


def test_a_full_buffer_blocks_the_caller_until_there_is_room(pipeline: Pipeline) -> None:
    gate = _gate(pipeline)
    writer = _writer(pipeline, buffer_size=2, batch_size=1)
    done = threading.Event()

    def produce() -> None:
        for i in range(6):
            writer.upsert(f"id{i}", vector(i))
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert not done.wait(0.3)  # blocked: the buffer is full and nothing is written
    gate.set()
    assert done.wait(10)
    assert writer.close(timeout=10)
    assert writer.stats().written == 6


# -- retries and failures --------------------------------------------------------------------


def test_unprocessed_items_are_sent_again_with_jittered_backoff(pipeline: Pipeline) -> None:
    _leave_unprocessed(pipeline, times=2)
    pauses: list[float] = []
    with _writer(pipeline, mode="batch", sleep=pauses.append) as writer:
        for i in range(5):
            writer.upsert(f"id{i}", vector(i))

    stats = writer.stats()
    assert (stats.written, stats.failed, stats.retried) == (5, 0, 10)
    assert len(pauses) == 2 and 0 <= pauses[0] <= 0.05 and 0 <= pauses[1] <= 0.1
    assert len(pipeline.table_state("docs")) == 5


def test_items_left_unprocessed_on_every_attempt_go_to_the_callback(pipeline: Pipeline) -> None:
    _leave_unprocessed(pipeline, times=1000)
    failures: list[WriteFailure] = []
    options: dict[str, Any] = {"mode": "batch", "max_attempts": 3, "sleep": lambda _s: None}
    with _writer(pipeline, on_failure=failures.append, **options) as writer:
        writer.upsert("doomed", vector(1))

    assert [f.write.id for f in failures] == ["doomed"]
    assert "unprocessed after 3 attempts" in failures[0].reason
    assert (writer.stats().failed, writer.stats().pending) == (1, 0)


def test_throttled_requests_are_retried_by_botocore(
    pipeline: Pipeline, no_retry_backoff: None
) -> None:
    throttle = FirstRequestsFail("throttle", 3)
    throttle.attach(pipeline.clients.dynamodb)
    with _writer(pipeline) as writer:
        for i in range(10):
            writer.upsert(f"id{i}", vector(i))

    stats = writer.stats()
    assert (throttle.injected, stats.written, stats.failed, stats.retried) == (3, 10, 0, 3)
    assert len(pipeline.table_state("docs")) == 10


def test_a_write_throttled_on_every_attempt_goes_to_the_callback(
    pipeline: Pipeline, no_retry_backoff: None
) -> None:
    FirstRequestsFail("throttle", 1000).attach(pipeline.clients.dynamodb)
    failures: list[WriteFailure] = []
    with _writer(pipeline, on_failure=failures.append) as writer:
        writer.upsert("doomed", vector(1))

    assert [f.write.id for f in failures] == ["doomed"]
    assert "ThrottlingException" in failures[0].reason
    assert writer.stats().failed == 1


def test_a_put_whose_response_was_lost_counts_as_written_when_botocore_resends_it(
    pipeline: Pipeline, no_retry_backoff: None
) -> None:
    FirstRequestsFail("lost-response", 1).attach(pipeline.clients.dynamodb)
    with _writer(pipeline) as writer:
        writer.upsert("a", vector(1))

    stats = writer.stats()
    assert (stats.written, stats.superseded, stats.retried) == (1, 0, 1)


def test_an_update_of_a_missing_record_is_reported_not_created(pipeline: Pipeline) -> None:
    failures: list[WriteFailure] = []
    with _writer(pipeline, on_failure=failures.append) as writer:
        writer.update("ghost", metadata={"k": 1})

    assert failures[0].reason == "update failed: no such record"
    assert pipeline.table_state("docs") == {}


def test_a_record_the_pipeline_cannot_carry_is_refused_when_offered(clients: Clients) -> None:
    with Writer("any-table", "docs", client=clients.dynamodb) as writer:
        with pytest.raises(InvalidRecord, match="over SQS's 262144"):
            writer.upsert("big", np.ones(70_000, dtype=np.float32))
        with pytest.raises(InvalidRecord, match="NaN"):
            writer.upsert("nan", [1.0, float("nan")])
        with pytest.raises(InvalidRecord, match="changes nothing"):
            writer.update("a")
        with pytest.raises(InvalidRecord, match="collection"):
            writer.delete("a", collection="no spaces allowed")

    assert writer.stats().enqueued == 0


# -- drain -----------------------------------------------------------------------------------


def test_close_drains_everything_queued_then_refuses_writes(pipeline: Pipeline) -> None:
    writer = _writer(pipeline, max_delay_s=60)
    for i in range(200):
        writer.upsert(f"id{i}", vector(i))

    assert writer.close(timeout=30)
    assert writer.stats().pending == 0
    assert len(pipeline.table_state("docs")) == 200
    with pytest.raises(WriterClosed):
        writer.upsert("late", vector(0))


def test_configuration_comes_from_the_environment(pipeline: Pipeline) -> None:
    env = {
        "CHROMA_COMPACTOR_WRITER_TABLE": pipeline.names.source_table,
        "CHROMA_COMPACTOR_WRITER_COLLECTION": "docs",
        "CHROMA_COMPACTOR_WRITER_MODE": "batch",
        "CHROMA_COMPACTOR_WRITER_BATCH_SIZE": "7",
    }
    sizes = _requests(pipeline, "BatchWriteItem")
    with Writer.from_env(env, client=pipeline.clients.dynamodb, max_delay_seconds=60) as writer:
        for i in range(14):
            writer.upsert(f"id{i}", vector(i))

    assert sizes == [7, 7]
    assert len(pipeline.table_state("docs")) == 14


# -- revs and order --------------------------------------------------------------------------


def test_an_older_write_that_lands_later_is_superseded(pipeline: Pipeline, reader: Reader) -> None:
    behind = _writer(pipeline, clock=HybridClock(now=lambda: 1_000.0))
    ahead = _writer(pipeline, clock=HybridClock(now=lambda: 1_001.0))
    ahead.upsert("a", vector(2), document="newer")
    ahead.flush()
    behind.upsert("a", vector(1), document="older")
    behind.delete("a")  # also older than "newer": it must not remove it
    behind.close()
    ahead.close()

    assert behind.stats().superseded == 2
    assert pipeline.table_state("docs")["a"][1] == "newer"
    _converge(pipeline, reader)


def test_a_record_recreated_after_another_writers_delete_outlives_the_tombstone(
    pipeline: Pipeline, reader: Reader
) -> None:
    first, second = _writer(pipeline), _writer(pipeline)
    first.upsert("a", vector(1), document="first")
    first.flush()
    second.delete("a")
    second.flush()
    first.upsert("a", vector(3), document="again")
    first.close()
    second.close()

    assert pipeline.table_state("docs")["a"][1] == "again"
    _converge(pipeline, reader)


def test_one_batch_writer_keeps_the_order_of_writes_to_one_id(
    pipeline: Pipeline, reader: Reader
) -> None:
    with _writer(pipeline, mode="batch", max_delay_s=60) as writer:
        writer.upsert("a", vector(1), document="one")
        writer.upsert("b", vector(2), document="two")
        writer.delete("a")
        writer.upsert("a", vector(3), document="three")
        writer.update("b", metadata={"k": 1})
        writer.delete("b")
        writer.upsert("b", vector(4), document="four")

    table = pipeline.table_state("docs")
    assert {k: v[1] for k, v in table.items()} == {"a": "three", "b": "four"}
    _converge(pipeline, reader)


def test_an_older_put_landing_after_a_delete_is_refused_by_the_deletes_stub(
    pipeline: Pipeline, reader: Reader
) -> None:
    """Without the stub the table would forget the deleted rev and take the older put."""
    behind = _writer(pipeline, clock=HybridClock(now=lambda: 1_000.0))
    ahead = _writer(pipeline, clock=HybridClock(now=lambda: 1_001.0))
    ahead.upsert("a", vector(2), document="newer")
    ahead.flush()
    ahead.delete("a")
    ahead.flush()
    behind.upsert("a", vector(1), document="older")
    behind.update("a", metadata={"late": True})
    behind.close()
    ahead.close()

    assert "a" not in pipeline.table_state("docs")
    assert (behind.stats().superseded, behind.stats().failed) == (1, 1)  # the update: no record
    _converge(pipeline, reader)


def test_a_deletes_stub_expires_after_the_tombstone_horizon(pipeline: Pipeline) -> None:
    """DynamoDB's TTL removes the stub once no late write can need it; its REMOVE is stale."""
    writer = _writer(pipeline)
    writer.upsert("a", vector(1))
    writer.flush()
    writer.delete("a")
    writer.close()

    stub = pipeline.clients.dynamodb.get_item(
        TableName=pipeline.names.source_table,
        Key={"collection": {"S": "docs"}, "id": {"S": "a"}},
    )["Item"]
    days = (int(stub["ttl"]["N"]) - time.time()) / 86_400
    assert stub["deleted"] == {"BOOL": True}
    assert 20.9 < days <= 21.0


def test_concurrent_writers_deleting_and_recreating_the_same_ids_converge(
    pipeline: Pipeline, reader: Reader, no_retry_backoff: None
) -> None:
    """Three services write four ids at once, deleting and re-creating them, over a network whose
    latency varies and which throttles, fails and loses responses; the snapshot still equals the
    table. (Without the delete's stub this fails: a slow put lands after another writer's newer
    put and delete.)"""
    FlakyAws(rate=0.05, seed=5).attach(pipeline.clients.dynamodb)
    jitter = random.Random(3)
    pipeline.clients.dynamodb.meta.events.register(
        "before-call.dynamodb", lambda **_: time.sleep(jitter.uniform(0, 0.01))
    )
    ids = [f"k{i}" for i in range(4)]

    def service(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with _writer(pipeline, max_delay_s=0.005, batch_size=4) as writer:
            for step in range(60):
                id_ = ids[int(rng.integers(len(ids)))]
                roll = rng.random()
                if roll < 0.3:
                    writer.delete(id_)
                elif roll < 0.4:
                    writer.update(id_, metadata={"by": seed, "step": step})
                else:
                    writer.upsert(id_, vector(seed * 1000 + step), document=f"{seed}:{step}")

    threads = [threading.Thread(target=service, args=(s,)) for s in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    _converge(pipeline, reader)
