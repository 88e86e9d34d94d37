"""Bulk ingest by delta: a run's records reach the table one BatchWriteItem at a time and the
snapshot in one message and one cycle, under the same ledger rules as single writes."""

from __future__ import annotations

import itertools
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import pytest
from botocore.awsrequest import AWSResponse

from chroma_compactor import ops
from chroma_compactor.cycle import publish_operations, run_cycle
from chroma_compactor.delta import BULK_RUN
from chroma_compactor.forwarder import operation_from_record
from chroma_compactor.resources import MAX_RECEIVE_COUNT, PipelineNames, create_pipeline
from chroma_compactor.settings import QueueType
from chroma_compactor.shards import Layout
from chroma_compactor.writer import BulkLoadFailed, HybridClock, InvalidRecord, Record, Writer
from support import Pipeline, assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chroma_compactor.reader import Reader
    from chroma_compactor.writer import BulkLoad

BIG = 50_000
_twins = itertools.count()


def _writer(pipeline: Pipeline, **options: Any) -> Writer:
    return Writer(
        pipeline.names.source_table,
        "docs",
        client=pipeline.clients.dynamodb,
        s3_client=pipeline.clients.s3,
        delta_bucket=pipeline.names.bucket,
        **options,
    )


def _records(n: int, start: int = 0) -> Iterator[Record]:
    for i in range(start, start + n):
        yield Record(
            f"id{i}",
            vector(i),
            document=f"doc {i}" if i % 3 else None,
            metadata={"i": i, "even": i % 2 == 0, "tag": f"t{i % 7}"} if i % 5 else None,
        )


def _bulk_load(pipeline: Pipeline, records: Iterator[Record], **options: Any) -> BulkLoad:
    with _writer(pipeline, **options) as writer:
        return writer.bulk_load(records)


def _twin(pipeline: Pipeline) -> Pipeline:
    """A second pipeline in the same moto, to build the same records another way."""
    names = PipelineNames.for_prefix(f"twin{next(_twins)}", pipeline.settings.queue_type)
    created = create_pipeline(pipeline.clients, names, pipeline.settings.queue_type)
    settings = pipeline.settings.model_copy(
        update={
            "source_table_name": names.source_table,
            "control_table_name": names.control_table,
            "snapshot_bucket": names.bucket,
            "compaction_queue_url": created.queue_url,
            "cache_dir": str(pipeline.tmp / "twin-cache"),
        }
    )
    twin_tmp = pipeline.tmp / f"twin-{names.bucket}"
    twin_tmp.mkdir()
    return Pipeline(pipeline.clients, names, created, settings, pipeline.clock, twin_tmp)


def _table_operations(pipeline: Pipeline, collection: str) -> list[ops.Operation]:
    """Each record of the table as the single upsert its stream record would have become."""
    found: list[ops.Operation] = []
    for page in pipeline.clients.dynamodb.get_paginator("scan").paginate(
        TableName=pipeline.names.source_table
    ):
        for item in page["Items"]:
            record = {
                "eventName": "INSERT",
                "dynamodb": {
                    "Keys": {"collection": item["collection"], "id": item["id"]},
                    "NewImage": item,
                    "SequenceNumber": "0",
                },
            }
            op = operation_from_record(record)
            if op is not None and op.collection == collection:
                found.append(op)
    return found


def _only_outcome(pipeline: Pipeline) -> Any:
    (report,) = pipeline.drain(pipeline.compactor("a"))
    (outcome,) = report.outcomes
    return outcome


# -- the measure ----------------------------------------------------------------------


@pytest.mark.slow  # ~2.5 min: most of it the 50K single upserts it is compared with
def test_a_50k_record_delta_merges_in_one_cycle_and_equals_the_records_one_by_one(
    pipeline: Pipeline, reader: Reader
) -> None:
    # GIVEN 50K records bulk-loaded and their stream forwarded
    started = time.perf_counter()
    load = _bulk_load(pipeline, _records(BIG))
    loaded = time.perf_counter()
    forwarded = pipeline.forward_stream()

    # WHEN the queue is compacted
    event = pipeline.receive_event()
    merge_started = time.perf_counter()
    report = pipeline.cycle(pipeline.compactor("a"), event)
    merged = time.perf_counter()

    # THEN one message carried the run, one cycle merged all of it ...
    assert (load.records, forwarded.sent, len(event)) == (BIG, 1, 1)
    (outcome,) = report.outcomes
    assert (outcome.delta_records, outcome.applied, outcome.failed) == (BIG, BIG, 0)
    assert outcome.committed_version == 1 and pipeline.queue_depth() == (0, 0)
    merged_state = snapshot_state(reader, "docs")
    assert_same_records(merged_state, pipeline.table_state("docs"))
    # ... equal to the same records applied one upsert each (what the table's stream of single
    # writes would have sent, and what a rebuild from a scan applies)
    twin = _twin(pipeline)
    singles = _table_operations(pipeline, "docs")
    assert len(singles) == BIG
    publish_operations(twin.compactor("a"), "docs", singles, time.monotonic() + 600)
    assert merged_state == snapshot_state(twin.reader(), "docs")
    print(  # the measure the issue asks for, shown with -s
        f"\nbulk_load {BIG}: {loaded - started:.1f}s; merge cycle: {merged - merge_started:.1f}s; "
        f"phases {outcome.phases_ms}"
    )


def test_a_bulk_load_equals_the_same_records_written_one_by_one_through_the_stream(
    pipeline: Pipeline, reader: Reader
) -> None:
    twin = _twin(pipeline)
    _bulk_load(pipeline, _records(120))
    with _writer(twin) as writer:
        for r in _records(120):
            writer.upsert(r.id, r.embedding, r.document, r.metadata)

    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))
    twin.forward_stream()
    twin.drain(twin.compactor("a"))

    assert snapshot_state(reader, "docs") == snapshot_state(twin.reader(), "docs")
    assert len(snapshot_state(reader, "docs")) == 120


# -- the forwarder ----------------------------------------------------------------------------


def test_the_forwarder_sends_one_message_for_a_bulk_load_and_none_for_its_records(
    pipeline: Pipeline,
) -> None:
    load = _bulk_load(pipeline, _records(300))

    forwarded = pipeline.forward_stream()

    assert (forwarded.sent, forwarded.skipped) == (1, 300)
    (message,) = pipeline.receive_event()
    op = ops.decode(message.body)
    assert op.op is ops.OpKind.DELTA and op.id == load.run_id and op.delta is not None
    assert (op.delta.records, op.delta.sha256, op.delta.shards) == (300, load.sha256, 1)
    assert load.delta == f"s3://{op.delta.bucket}/{op.delta.key}"


@pytest.mark.parametrize("queue_type", [QueueType.STANDARD, QueueType.FIFO], indirect=True)
def test_a_sharded_collection_gets_one_message_per_shard_and_every_record_in_its_shard(
    pipeline: Pipeline, reader: Reader
) -> None:
    pipeline.settings = pipeline.settings.model_copy(update={"collection_shards": {"docs": 2}})
    _bulk_load(pipeline, _records(400))

    forwarded = pipeline.forward_stream()
    reports = pipeline.drain(pipeline.compactor("a"))

    assert forwarded.sent == 2
    per_shard = [o.delta_records for r in reports for o in r.outcomes]
    assert len(per_shard) == 2 and sum(per_shard) == 400 and min(per_shard) > 0
    layout = Layout("docs", 2)
    states = {p: snapshot_state(reader, p) for p in layout.partitions}
    assert sum(len(s) for s in states.values()) == 400
    assert all(states.values())
    for partition, state in states.items():
        assert all(layout.partition_of(id_) == partition for id_ in state)
    merged = {k: v for s in states.values() for k, v in s.items()}
    assert_same_records(merged, pipeline.table_state("docs"))


@pytest.mark.parametrize("change", ["update", "upsert"])
def test_a_later_write_through_the_writer_clears_bulk_run_and_is_forwarded(
    pipeline: Pipeline, reader: Reader, change: str
) -> None:
    _bulk_load(pipeline, _records(10))
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    with _writer(pipeline) as writer:
        if change == "update":
            writer.update("id4", metadata={"changed": True})
        else:
            writer.upsert("id4", vector(1000), document="rewritten")
    forwarded = pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    item = pipeline.clients.dynamodb.get_item(
        TableName=pipeline.names.source_table,
        Key={"collection": {"S": "docs"}, "id": {"S": "id4"}},
    )["Item"]
    assert BULK_RUN not in item
    assert forwarded.sent == 1
    assert_same_records(snapshot_state(reader, "docs"), pipeline.table_state("docs"))


# -- ledger rules -----------------------------------------------------------------------------


def test_stale_records_of_a_delta_are_skipped_and_a_tombstone_stops_resurrection(
    pipeline: Pipeline, reader: Reader
) -> None:
    # GIVEN id1 written and id2 deleted at revs above anything the delta's clock gives
    newer = 10**18
    pipeline.send(
        ops.upsert("docs", "id1", newer, vector(500), document="newer"),
        ops.delete("docs", "id2", newer),
    )
    pipeline.drain(pipeline.compactor("a"))
    # WHEN a delta holds older versions of both (a writer whose clock reads 1970)
    _bulk_load(pipeline, _records(5), clock=HybridClock(now=lambda: 1.0))
    pipeline.forward_stream()
    outcome = _only_outcome(pipeline)

    # THEN both are skipped as stale, the others applied
    assert (outcome.stale, outcome.applied) == (2, 3)
    state = snapshot_state(reader, "docs")
    assert sorted(state) == ["id0", "id1", "id3", "id4"]
    assert state["id1"][1] == "newer"


def test_an_update_in_the_batch_of_its_delta_patches_the_delta_record(
    pipeline: Pipeline, reader: Reader
) -> None:
    # GIVEN a delta and, queued before it, a newer metadata-only update of one of its records
    pipeline.send(ops.update("docs", "id2", 10**18, metadata={"patched": True}))
    _bulk_load(pipeline, _records(5))
    pipeline.forward_stream()

    # WHEN both arrive in one batch
    (report,) = pipeline.drain(pipeline.compactor("a"))

    # THEN the delta is applied first and the update patches its record
    assert report.outcomes[0].not_found == 0
    assert snapshot_state(reader, "docs")["id2"][2] == {"patched": True}


def test_a_redelivered_delta_message_is_a_no_op(pipeline: Pipeline, reader: Reader) -> None:
    _bulk_load(pipeline, _records(200))
    pipeline.forward_stream()
    (message,) = pipeline.receive_event(visibility=0)  # seen, then visible again
    body = message.body
    first = _only_outcome(pipeline)
    before = snapshot_state(reader, "docs")

    pipeline.send(body)  # the same message, delivered again
    again = _only_outcome(pipeline)

    assert (first.applied, first.committed_version) == (200, 1)
    assert (again.applied, again.stale, again.committed_version) == (0, 200, None)
    assert reader.pointers.read("docs").version == 1
    assert snapshot_state(reader, "docs") == before


def test_a_delta_that_cannot_finish_before_the_deadline_is_handed_back(
    pipeline: Pipeline, reader: Reader
) -> None:
    _bulk_load(pipeline, _records(50))
    pipeline.forward_stream()
    event = pipeline.receive_event()

    # Less time left than the cycle keeps in reserve for upload and commit.
    report = run_cycle(
        pipeline.compactor("a"), event, pipeline.created.queue_url, time.monotonic() + 15
    )

    (outcome,) = report.outcomes
    assert outcome.abandoned is not None and "DeadlineExceeded" in outcome.abandoned
    assert reader.pointers.read("docs").version == 0
    assert pipeline.queue_depth() == (1, 0)  # visible again at once, for the next invocation


# -- damaged deltas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [("missing", "cannot be read: NoSuchKey"), ("replaced", "damaged")],
)
def test_a_damaged_delta_goes_to_the_dlq_while_its_batch_commits(
    pipeline: Pipeline,
    reader: Reader,
    caplog: pytest.LogCaptureFixture,
    damage: str,
    reason: str,
) -> None:
    load = _bulk_load(pipeline, _records(50))
    bucket, key = load.delta.removeprefix("s3://").split("/", 1)
    if damage == "missing":
        pipeline.clients.s3.delete_object(Bucket=bucket, Key=key)
    else:
        pipeline.clients.s3.put_object(Bucket=bucket, Key=key, Body=b"not the delta")
    pipeline.forward_stream()
    pipeline.send(ops.upsert("docs", "single", 1, vector(7)))
    compactor = pipeline.compactor("a")

    with caplog.at_level(logging.ERROR):
        first = pipeline.cycle(compactor)
        pipeline.drain(compactor)

    # The single upsert commits; the delta changed nothing and failed alone ...
    assert len(first.failed_event_ids) == 1
    assert sorted(snapshot_state(reader, "docs")) == ["single"]
    # ... and after its retries SQS moved it to the DLQ, the reason logged at every receive.
    assert pipeline.queue_depth() == (0, 0)
    (dead,) = pipeline.clients.sqs.receive_message(QueueUrl=pipeline.created.dlq_url)["Messages"]
    assert ops.decode(dead["Body"]).id == load.run_id
    rejections = [r for r in caplog.records if getattr(r, "message_id", None) == dead["MessageId"]]
    assert len(rejections) == MAX_RECEIVE_COUNT
    assert all(reason in r.getMessage() for r in rejections), rejections[0].getMessage()


# -- the writer's side ------------------------------------------------------------------------


def test_a_later_record_of_the_same_id_in_one_load_wins(pipeline: Pipeline, reader: Reader) -> None:
    records = [*_records(30), Record("id3", vector(999), document="second")]

    load = _bulk_load(pipeline, iter(records))
    pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    assert load.records == 31
    assert pipeline.table_state("docs")["id3"][1] == "second"
    assert_same_records(snapshot_state(reader, "docs"), pipeline.table_state("docs"))


def test_an_invalid_record_stops_the_load_and_the_records_before_it_are_published(
    pipeline: Pipeline, reader: Reader
) -> None:
    records = [*_records(5), Record("bad", [float("nan")] * 8), *_records(5, start=5)]

    with pytest.raises(InvalidRecord, match=r"stopped after 5 records .*NaN"):
        _bulk_load(pipeline, iter(records))
    forwarded = pipeline.forward_stream()
    pipeline.drain(pipeline.compactor("a"))

    assert forwarded.sent == 1
    assert sorted(pipeline.table_state("docs")) == [f"id{i}" for i in range(5)]
    assert_same_records(snapshot_state(reader, "docs"), pipeline.table_state("docs"))


def test_a_load_whose_records_cannot_be_written_raises_and_announces_no_run(
    pipeline: Pipeline,
) -> None:
    # GIVEN DynamoDB hands back every BatchWriteItem's items unprocessed
    def refuse(params: dict[str, Any], **_: Any) -> Any:
        items = json.loads(params["body"])["RequestItems"]
        return AWSResponse(params["url"], 200, {}, None), {"UnprocessedItems": items}

    pipeline.clients.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", refuse)

    with pytest.raises(BulkLoadFailed, match="records not written") as raised:
        _bulk_load(pipeline, _records(60), max_attempts=2, sleep=lambda _s: None)

    assert raised.value.run_id
    assert pipeline.forward_stream().sent == 0  # no run item, no delta message
