"""The writer client: batching, backpressure, retries, drain, and revs that keep order."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from chroma_compactor.writer import (
    MAX_BATCH,
    HybridClock,
    WriteFailure,
    Writer,
    WriterClosed,
    WriterFull,
)
from faults import FlakyAws
from support import assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline


# What a `before-call` handler returns to answer in DynamoDB's place: (http response, parsed).
_OK = SimpleNamespace(status_code=200, headers={})


def _request_items(params: dict[str, Any]) -> Any:
    """The RequestItems of a serialized BatchWriteItem request (what `before-call` sees)."""
    return json.loads(params["body"])["RequestItems"]


@pytest.fixture
def calls(pipeline: Pipeline) -> list[int]:
    """The size of every BatchWriteItem request the pipeline's DynamoDB client sends."""
    sizes: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sizes.extend(len(items) for items in params["RequestItems"].values())

    pipeline.clients.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.BatchWriteItem", record
    )
    return sizes


def _writer(pipeline: Pipeline, **options: Any) -> Writer:
    return Writer(pipeline.names.source_table, "docs", client=pipeline.clients.dynamodb, **options)


def _gate(pipeline: Pipeline) -> threading.Event:
    """Holds every BatchWriteItem until the returned event is set."""
    gate = threading.Event()
    pipeline.clients.dynamodb.meta.events.register(
        "before-call.dynamodb.BatchWriteItem", lambda **_: gate.wait(10) and None
    )
    return gate


def test_writes_are_batched_by_size(pipeline: Pipeline, calls: list[int]) -> None:
    with _writer(pipeline, max_delay_s=5) as writer:
        for i in range(60):
            writer.upsert(f"id{i}", vector(i), document=f"d{i}")

    assert writer.stats().written == 60
    assert sum(calls) == 60 and max(calls) == MAX_BATCH
    assert len(pipeline.table_state("docs")) == 60


def test_a_lone_write_goes_out_after_max_delay_without_a_flush(pipeline: Pipeline) -> None:
    writer = _writer(pipeline, max_delay_s=0.05)
    writer.upsert("only", vector(1))
    deadline = time.monotonic() + 5
    while writer.stats().written == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert writer.stats().written == 1
    assert writer.stats().max_latency_ms < 2000
    writer.close()


def test_a_full_buffer_raises_when_told_to(pipeline: Pipeline) -> None:
    gate = _gate(pipeline)
    writer = _writer(pipeline, buffer_size=2, batch_size=1, on_full="raise")
    try:
        with pytest.raises(WriterFull, match="buffer full"):
            for i in range(10):
                writer.upsert(f"id{i}", vector(i))
    finally:
        gate.set()
        writer.close(timeout=10)


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


def test_unprocessed_items_are_retried_until_written(pipeline: Pipeline) -> None:
    # DynamoDB hands back every item of the first two requests as unprocessed.
    refusals = iter(range(2))

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        if next(refusals, None) is None:
            return None
        return (_OK, {"UnprocessedItems": _request_items(params)})

    pipeline.clients.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", refuse)
    with _writer(pipeline, sleep=lambda _s: None) as writer:
        for i in range(5):
            writer.upsert(f"id{i}", vector(i))

    stats = writer.stats()
    assert (stats.written, stats.failed, stats.retried) == (5, 0, 10)
    assert len(pipeline.table_state("docs")) == 5


def test_throttling_is_retried_by_botocore(pipeline: Pipeline, no_retry_backoff: None) -> None:
    flaky = FlakyAws(rate=0.3, seed=3)
    flaky.attach(pipeline.clients.dynamodb)
    with _writer(pipeline, batch_size=5) as writer:
        for i in range(50):
            writer.upsert(f"id{i}", vector(i))

    assert sum(flaky.injected.values()) > 0
    assert writer.stats().written + writer.stats().failed == 50
    assert len(pipeline.table_state("docs")) == writer.stats().written


def test_a_write_that_keeps_failing_goes_to_the_callback(pipeline: Pipeline) -> None:
    pipeline.clients.dynamodb.meta.events.register(
        "before-call.dynamodb.BatchWriteItem",
        lambda params, **_: (_OK, {"UnprocessedItems": _request_items(params)}),
    )
    failures: list[WriteFailure] = []
    with _writer(pipeline, max_attempts=3, sleep=lambda _s: None, on_failure=failures.append) as w:
        w.upsert("doomed", vector(1))

    assert [f.write.id for f in failures] == ["doomed"]
    assert "unprocessed after 3 attempts" in failures[0].reason
    assert w.stats().failed == 1


def test_an_update_of_a_missing_record_is_reported_not_created(pipeline: Pipeline) -> None:
    failures: list[WriteFailure] = []
    with _writer(pipeline, on_failure=failures.append) as writer:
        writer.update("ghost", metadata={"k": 1})

    assert failures[0].reason == "update failed: no such record"
    assert pipeline.table_state("docs") == {}


def test_close_drains_everything_queued(pipeline: Pipeline) -> None:
    writer = _writer(pipeline, max_delay_s=10)
    for i in range(200):
        writer.upsert(f"id{i}", vector(i))

    assert writer.close(timeout=30)
    assert writer.stats().pending == 0
    assert len(pipeline.table_state("docs")) == 200
    with pytest.raises(WriterClosed):
        writer.upsert("late", vector(0))


def test_revs_grow_even_when_the_clock_stands_still() -> None:
    clock = HybridClock(now=lambda: 1_000.0)

    revs = [clock.next() for _ in range(5)]

    assert revs == sorted(set(revs))


def test_configuration_comes_from_the_environment(pipeline: Pipeline) -> None:
    env = {
        "CHROMA_COMPACTOR_WRITER_TABLE": pipeline.names.source_table,
        "CHROMA_COMPACTOR_WRITER_COLLECTION": "docs",
        "CHROMA_COMPACTOR_WRITER_BATCH_SIZE": "7",
        "CHROMA_COMPACTOR_WRITER_ON_FULL": "raise",
    }
    writer = Writer.from_env(env, client=pipeline.clients.dynamodb, max_delay_s=0.01)

    assert (writer.table_name, writer.collection) == (pipeline.names.source_table, "docs")
    assert writer._batch_size == 7 and writer._on_full == "raise"
    writer.close()


def test_concurrent_writers_with_delete_and_recreate_converge(
    pipeline: Pipeline, reader: Reader
) -> None:
    """Two services write the same ids, deleting and re-creating them; the snapshot follows."""
    ids = [f"k{i}" for i in range(8)]

    def service(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with _writer(pipeline, max_delay_s=0.01) as writer:
            for step in range(60):
                id_ = ids[int(rng.integers(len(ids)))]
                if rng.random() < 0.3:
                    writer.delete(id_)
                else:
                    writer.upsert(id_, vector(seed * 1000 + step), document=f"{seed}:{step}")
                if step % 10 == 0:
                    writer.flush()

    threads = [threading.Thread(target=service, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    assert_same_records(snapshot_state(reader, "docs"), pipeline.table_state("docs"))
