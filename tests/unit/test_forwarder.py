"""Forwarder: DynamoDB stream records (as Lambda delivers them) -> operations -> SQS messages."""

from __future__ import annotations

import base64
import itertools
from typing import TYPE_CHECKING, Any

import pytest

from chroma_compactor import ops
from chroma_compactor.errors import InvalidMessage
from chroma_compactor.forwarder import forward, operation_from_record
from chroma_compactor.settings import QueueType, Settings
from chroma_compactor.shards import shard_of
from support import vector

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from support import Pipeline

_seq = itertools.count(1000)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _record(
    event_name: str,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    *,
    collection: str = "docs",
    id_: str = "a1",
    seq: str | None = None,
) -> dict[str, Any]:
    """A stream record shaped as Lambda hands it over: binary attributes as base64 text."""
    keys = {"collection": {"S": collection}, "id": {"S": id_}}
    ddb: dict[str, Any] = {
        "Keys": keys,
        "SequenceNumber": seq or str(next(_seq)),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = {**keys, **new}
    if old is not None:
        ddb["OldImage"] = {**keys, **old}
    return {
        "eventID": f"event-{ddb['SequenceNumber']}",
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "dynamodb": ddb,
    }


def _insert(id_: str = "a1", rev: int = 1, seed: int = 1, **kw: Any) -> dict[str, Any]:
    new = {"rev": {"N": str(rev)}, "embedding": {"B": _b64(vector(seed).tobytes())}}
    return _record("INSERT", new, id_=id_, **kw)


# -- operation_from_record --------------------------------------------------------------------


def test_an_insert_with_an_embedding_becomes_an_upsert_of_the_whole_new_image() -> None:
    record = _record(
        "INSERT",
        new={
            "rev": {"N": "3"},
            "embedding": {"B": _b64(vector(1).tobytes())},
            "document": {"S": "hello"},
            "metadata": {
                "M": {
                    "lang": {"S": "en"},
                    "score": {"N": "0.5"},
                    "n": {"N": "2"},
                    "ok": {"BOOL": True},
                }
            },
        },
    )

    op = operation_from_record(record)

    assert op == ops.upsert(
        "docs",
        "a1",
        3,
        vector(1),
        document="hello",
        metadata={"lang": "en", "score": 0.5, "n": 2, "ok": True},
    )


def test_a_modify_with_an_embedding_is_a_full_state_upsert_too() -> None:
    record = _record(
        "MODIFY", new={"rev": {"N": "4"}, "embedding": {"B": _b64(vector(2).tobytes())}}
    )

    assert operation_from_record(record) == ops.upsert("docs", "a1", 4, vector(2))


def test_a_remove_becomes_a_delete_at_the_old_image_rev() -> None:
    record = _record(
        "REMOVE", old={"rev": {"N": "4"}, "embedding": {"B": _b64(vector(1).tobytes())}}
    )

    assert operation_from_record(record) == ops.delete("docs", "a1", 4)


def test_a_modify_without_an_embedding_becomes_an_update_of_document_and_metadata() -> None:
    record = _record(
        "MODIFY",
        new={
            "rev": {"N": "5"},
            "document": {"S": "new text"},
            "metadata": {"M": {"k": {"S": "v"}}},
        },
    )

    assert operation_from_record(record) == ops.update(
        "docs", "a1", 5, document="new text", metadata={"k": "v"}
    )


def test_an_update_without_metadata_clears_the_stored_metadata() -> None:
    # The NewImage is the whole state: no metadata attribute means the record has none.
    record = _record("MODIFY", new={"rev": {"N": "5"}, "document": {"S": "only text"}})

    op = operation_from_record(record)

    assert op is not None
    assert (op.op, op.document, op.metadata) == (ops.OpKind.UPDATE, "only text", {})


def test_a_record_with_neither_embedding_document_nor_metadata_forwards_nothing() -> None:
    assert operation_from_record(_record("MODIFY", new={"rev": {"N": "2"}})) is None


def test_a_missing_rev_falls_back_to_the_sequence_number() -> None:
    seq = "400000000000000000001234"  # stream sequence numbers exceed int64
    record = _record("INSERT", new={"embedding": {"B": _b64(vector(1).tobytes())}}, seq=seq)

    op = operation_from_record(record)

    assert op is not None
    assert op.rev == int(seq)


def test_a_remove_without_a_rev_falls_back_to_the_sequence_number() -> None:
    record = _record("REMOVE", old={"document": {"S": "x"}}, seq="98765")

    assert operation_from_record(record) == ops.delete("docs", "a1", 98765)


def test_an_embedding_given_as_a_list_of_numbers_is_accepted() -> None:
    numbers = [0.5, -1.25, 3.0, 8.0]
    record = _record(
        "INSERT",
        new={"rev": {"N": "1"}, "embedding": {"L": [{"N": str(x)} for x in numbers]}},
    )

    op = operation_from_record(record)

    assert op is not None
    assert op.vector().tolist() == numbers


@pytest.mark.parametrize(
    "rev",
    [{"N": "1.5"}, {"N": "-1"}, {"S": "7"}],
    ids=["fractional", "negative", "string"],
)
def test_a_rev_that_is_not_a_non_negative_integer_is_invalid(rev: dict[str, str]) -> None:
    record = _record("INSERT", new={"rev": rev, "embedding": {"B": _b64(vector(1).tobytes())}})

    with pytest.raises(InvalidMessage, match="rev must be a non-negative integer"):
        operation_from_record(record)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"S": "lang=en"}, "metadata is str, not a map"),
        ({"M": {"tags": {"L": [{"S": "a"}]}}}, "metadata 'tags' is list"),
        ({"M": {"raw": {"B": _b64(b"xyz")}}}, "metadata 'raw' is Binary"),
    ],
    ids=["string", "list-value", "binary-value"],
)
def test_metadata_that_is_not_a_map_of_scalars_is_invalid(
    metadata: dict[str, Any], reason: str
) -> None:
    record = _record("MODIFY", new={"rev": {"N": "1"}, "metadata": metadata})

    with pytest.raises(InvalidMessage, match=reason):
        operation_from_record(record)


def test_an_embedding_that_is_neither_binary_nor_numbers_is_invalid() -> None:
    record = _record("INSERT", new={"rev": {"N": "1"}, "embedding": {"S": "not a vector"}})

    with pytest.raises(InvalidMessage, match="embedding must be B"):
        operation_from_record(record)


def test_a_collection_name_chroma_rejects_is_an_invalid_message() -> None:
    with pytest.raises(InvalidMessage, match="collection"):
        operation_from_record(_insert(collection="my docs"))


def test_a_record_whose_message_would_exceed_sqs_limit_is_invalid() -> None:
    # Each field is within its own bound; together they are over SQS's 256 KiB.
    new = {
        "rev": {"N": "1"},
        "embedding": {"B": _b64(vector(1).tobytes())},
        "document": {"S": "x" * (ops.MAX_DOCUMENT_BYTES - 1024)},
        "metadata": {"M": {"note": {"S": "y" * (ops.MAX_METADATA_BYTES // 2)}}},
    }

    with pytest.raises(InvalidMessage, match=f"over SQS's {ops.MAX_MESSAGE_BYTES}"):
        operation_from_record(_record("INSERT", new))


# -- forward() against SQS --------------------------------------------------------------------


def _drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        out = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )
        if not out.get("Messages"):
            return messages
        messages.extend(out["Messages"])


def _ops_on(sqs: SQSClient, url: str) -> list[ops.Operation]:
    return sorted((ops.decode(m["Body"]) for m in _drain(sqs, url)), key=lambda o: o.id)


def test_forwarded_operations_land_on_the_compaction_queue(pipeline: Pipeline) -> None:
    records = [
        _insert("a1", rev=1, seed=1),
        _record("REMOVE", old={"rev": {"N": "7"}}, id_="a2"),
    ]

    result = forward(pipeline.clients.sqs, pipeline.settings, records)

    assert (result.sent, result.failed_sequence_numbers) == (2, [])
    assert _ops_on(pipeline.clients.sqs, pipeline.created.queue_url) == [
        ops.upsert("docs", "a1", 1, vector(1)),
        ops.delete("docs", "a2", 7),
    ]


def test_more_records_than_one_sqs_batch_are_all_sent(pipeline: Pipeline) -> None:
    records = [_insert(f"id-{i:02d}", seed=i) for i in range(25)]

    result = forward(pipeline.clients.sqs, pipeline.settings, records)

    assert result.sent == 25
    assert len(_drain(pipeline.clients.sqs, pipeline.created.queue_url)) == 25


def test_a_record_with_nothing_to_forward_is_counted_skipped(pipeline: Pipeline) -> None:
    result = forward(pipeline.clients.sqs, pipeline.settings, [_record("MODIFY", new={})])

    assert (result.sent, result.skipped, result.failed_sequence_numbers) == (0, 1, [])
    assert _drain(pipeline.clients.sqs, pipeline.created.queue_url) == []


@pytest.mark.parametrize("queue_type", [QueueType.FIFO], indirect=True)
def test_a_fifo_queue_gets_one_group_per_collection_and_the_event_id_as_dedup_id(
    pipeline: Pipeline,
) -> None:
    record = _insert("a1", collection="docs")

    forward(pipeline.clients.sqs, pipeline.settings, [record])

    (message,) = _drain(pipeline.clients.sqs, pipeline.created.queue_url)
    assert message["Attributes"]["MessageGroupId"] == "compaction:docs"
    assert message["Attributes"]["MessageDeduplicationId"] == record["eventID"]


@pytest.mark.parametrize("queue_type", [QueueType.FIFO], indirect=True)
def test_a_sharded_collection_gets_one_fifo_group_per_shard(pipeline: Pipeline) -> None:
    settings = pipeline.settings.model_copy(update={"collection_shards": {"docs": 4}})
    records = [_insert(f"id-{i:02d}", seed=i) for i in range(40)]

    forward(pipeline.clients.sqs, settings, records)

    groups = {
        ops.decode(m["Body"]).id: m["Attributes"]["MessageGroupId"]
        for m in _drain(pipeline.clients.sqs, pipeline.created.queue_url)
    }
    assert set(groups.values()) == {f"compaction:docs:{i}" for i in range(4)}
    assert all(group == f"compaction:docs:{shard_of(id_, 4)}" for id_, group in groups.items())


@pytest.mark.parametrize("queue_type", [QueueType.FIFO], indirect=True)
def test_a_redelivered_stream_record_is_deduplicated_by_a_fifo_queue(pipeline: Pipeline) -> None:
    record = _insert("a1")

    forward(pipeline.clients.sqs, pipeline.settings, [record])
    forward(pipeline.clients.sqs, pipeline.settings, [record])

    assert len(_drain(pipeline.clients.sqs, pipeline.created.queue_url)) == 1


def test_an_invalid_record_is_reported_by_its_sequence_number_and_the_rest_are_sent(
    pipeline: Pipeline,
) -> None:
    bad = _record("INSERT", new={"rev": {"N": "-3"}, "embedding": {"B": _b64(vector(1).tobytes())}})
    records = [_insert("good1"), bad, _insert("good2")]

    result = forward(pipeline.clients.sqs, pipeline.settings, records)

    assert result.sent == 2
    assert result.batch_item_failures() == {
        "batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]
    }
    sent = _ops_on(pipeline.clients.sqs, pipeline.created.queue_url)
    assert [o.id for o in sent] == ["good1", "good2"]


def _routed(pipeline: Pipeline, routes: dict[str, str]) -> Settings:
    fields = pipeline.settings.model_dump()
    fields.update(compaction_queue_url="", compaction_queue_urls=routes)
    return Settings.model_validate(fields)


def test_with_a_queue_map_each_collection_goes_to_its_own_queue(pipeline: Pipeline) -> None:
    sqs = pipeline.clients.sqs
    notes_url = sqs.create_queue(QueueName=f"{pipeline.names.queue}-notes")["QueueUrl"]
    settings = _routed(pipeline, {"docs": pipeline.created.queue_url, "notes": notes_url})

    result = forward(
        sqs, settings, [_insert("d1", collection="docs"), _insert("n1", collection="notes")]
    )

    assert result.sent == 2
    assert [(o.collection, o.id) for o in _ops_on(sqs, pipeline.created.queue_url)] == [
        ("docs", "d1")
    ]
    assert [(o.collection, o.id) for o in _ops_on(sqs, notes_url)] == [("notes", "n1")]


def test_a_collection_missing_from_the_queue_map_is_reported_as_failed(pipeline: Pipeline) -> None:
    settings = _routed(pipeline, {"docs": pipeline.created.queue_url})
    stray = _insert("x1", collection="unrouted")

    result = forward(pipeline.clients.sqs, settings, [_insert("d1"), stray])

    assert result.sent == 1
    assert result.failed_sequence_numbers == [stray["dynamodb"]["SequenceNumber"]]


def test_an_oversized_record_fails_alone_on_a_queue_with_the_default_256_kib_limit(
    pipeline: Pipeline,
) -> None:
    sqs = pipeline.clients.sqs
    url = sqs.create_queue(
        QueueName=f"{pipeline.names.queue}-small", Attributes={"MaximumMessageSize": "262144"}
    )["QueueUrl"]
    settings = _routed(pipeline, {"docs": url})
    big = _record(
        "INSERT",
        {
            "rev": {"N": "1"},
            "embedding": {"B": _b64(vector(1).tobytes())},
            "document": {"S": "x" * (ops.MAX_DOCUMENT_BYTES - 16)},
        },
        id_="big",
    )

    result = forward(sqs, settings, [_insert("d1"), big, _insert("d2")])

    assert result.failed_sequence_numbers == [big["dynamodb"]["SequenceNumber"]]
    assert [o.id for o in _ops_on(sqs, url)] == ["d1", "d2"]


def test_a_record_with_an_illegal_collection_name_fails_alone(pipeline: Pipeline) -> None:
    bad = _insert("x1", collection="my docs")

    result = forward(pipeline.clients.sqs, pipeline.settings, [_insert("d1"), bad])

    assert result.sent == 1
    assert result.failed_sequence_numbers == [bad["dynamodb"]["SequenceNumber"]]
