"""DynamoDB stream records -> compaction operations -> SQS messages.

Full-state mode (the table holds embeddings): INSERT/MODIFY become ``upsert`` with the whole
NewImage, REMOVE becomes ``delete``. Each message carries the record's complete state at its rev,
so any delivery order converges. A NewImage without an embedding (a table that keeps vectors
elsewhere) becomes an ``update`` of document and metadata, which heals reordering among updates
but not an update that arrives before its record's first upsert (it is skipped as not found).

Bulk loads (delta.py): an item image that carries ``bulk_run`` is not sent (its run's delta
carries it); a run item's INSERT becomes one ``delta`` message per shard of its collection.

Revs: the item's ``rev`` attribute. A REMOVE carries the OldImage's rev; at equal rev a delete
outranks an upsert, so a writer that re-creates an id must give it a higher rev than the delete
saw. Without a ``rev`` attribute the stream record's SequenceNumber stands in: it grows with
every change of an item, across delete and re-create, within the stream.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from pydantic import ValidationError as PydanticValidationError

from chroma_compactor.delta import BULK_RUN, RUN, delta_operations
from chroma_compactor.errors import ConfigurationError, InvalidMessage
from chroma_compactor.ops import (
    Operation,
    OpKind,
    checked,
    encode,
    pack_embedding,
)
from chroma_compactor.shards import Layout

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mypy_boto3_sqs import SQSClient

    from chroma_compactor.settings import Settings

log = logging.getLogger(__name__)

_SQS_BATCH = 10
_SQS_BATCH_BYTES = 256 * 1024  # SendMessageBatch payload limit (all entries together)
_SEND_ATTEMPTS = 3
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class StreamItem:
    """One stream record turned into the message it should become."""

    sequence_number: str
    event_id: str
    op: Operation


@dataclass
class ForwardResult:
    sent: int = 0
    skipped: int = 0  # records that carry nothing for the compactor
    failed_sequence_numbers: list[str] = field(default_factory=list)

    def batch_item_failures(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failed_sequence_numbers]}


def operation_from_record(record: dict[str, Any]) -> Operation | None:
    """The operation a Lambda-shaped DynamoDB stream record stands for (None: nothing to do)."""
    try:
        return _operation(record)
    except PydanticValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}"
            for err in e.errors()
        )
        raise InvalidMessage(f"stream record is not a valid operation: {problems}") from None


def _operation(record: dict[str, Any]) -> Operation | None:
    ddb = record["dynamodb"]
    keys = _image(ddb.get("Keys", {}))
    collection, id_ = keys.get("collection"), keys.get("id")
    if not isinstance(collection, str) or not isinstance(id_, str):
        raise InvalidMessage("stream record has no string keys 'collection' and 'id'")
    name = record.get("eventName")
    if name == "REMOVE":
        old = _image(ddb.get("OldImage", {}))
        return Operation(op=OpKind.DELETE, collection=collection, id=id_, rev=_rev(old, ddb))
    if name not in ("INSERT", "MODIFY"):
        raise InvalidMessage(f"unknown stream event {name!r}")
    new = _image(ddb.get("NewImage", {}))
    rev = _rev(new, ddb)
    document = new.get("document")
    metadata = _metadata(new.get("metadata"))
    if not (document is None or isinstance(document, str)):
        raise InvalidMessage(f"document of {id_!r} is {type(document).__name__}, not a string")
    if "embedding" in new:
        op = Operation(
            op=OpKind.UPSERT,
            collection=collection,
            id=id_,
            rev=rev,
            embedding=_embedding(new["embedding"]),
            document=document,
            metadata=metadata,
        )
    elif document is None and metadata is None:
        return None
    else:
        op = Operation(
            op=OpKind.UPDATE,
            collection=collection,
            id=id_,
            rev=rev,
            document=document,
            metadata=metadata if metadata is not None else {},
        )
    # What the compactor would reject, reject here first.
    return checked(op)


def forward(sqs: SQSClient, settings: Settings, records: Iterable[dict[str, Any]]) -> ForwardResult:
    """Send each record's operation to its collection's queue; report what could not be sent.

    A record that can never become a valid operation is reported too: the event source mapping's
    retry limit then hands it to the on-failure destination instead of dropping it silently.
    """
    result = ForwardResult()
    by_queue: dict[str, list[StreamItem]] = {}
    for record in records:
        seq = record["dynamodb"]["SequenceNumber"]
        try:
            operations = operations_to_send(record, settings)
            if not operations:
                result.skipped += 1
                continue
            url = settings.queue_url_for(operations[0].collection)
        except (InvalidMessage, ConfigurationError) as e:
            log.error(
                "stream record not forwarded: %s",
                e,
                extra={"event_id": record.get("eventID"), "sequence_number": seq},
            )
            result.failed_sequence_numbers.append(seq)
            continue
        for i, op in enumerate(operations):
            # One event, several messages (a delta's shards): each its own FIFO dedup id.
            event_id = record["eventID"] if i == 0 else f"{record['eventID']}:{i}"
            by_queue.setdefault(url, []).append(StreamItem(seq, event_id, op))
    for url, items in by_queue.items():
        for batch in _batches(items):
            failed = _send(sqs, url, batch, settings)
            result.sent += len(batch) - len(failed)
            result.failed_sequence_numbers.extend(i.sequence_number for i in failed)
    # A delta's shards may fail apart; the record is reported (and resent whole) once.
    result.failed_sequence_numbers = list(dict.fromkeys(result.failed_sequence_numbers))
    return result


def operations_to_send(record: dict[str, Any], settings: Settings) -> list[Operation]:
    """The messages a stream record becomes: a run item's INSERT one delta per shard, an image a
    delta carries (``bulk_run``) none, any other record its operation (or none)."""
    ddb = record["dynamodb"]
    image = ddb.get("OldImage" if record.get("eventName") == "REMOVE" else "NewImage", {})
    if RUN in image:
        if record.get("eventName") != "INSERT":
            return []  # a run is announced once; its later changes and removal mean nothing
        keys = _image(ddb.get("Keys", {}))
        collection, id_ = str(keys.get("collection")), str(keys.get("id"))
        return delta_operations(
            collection, id_, _image({RUN: image[RUN]})[RUN], settings.shards_for(collection)
        )
    if BULK_RUN in image and record.get("eventName") != "REMOVE":
        return []
    op = operation_from_record(record)
    return [] if op is None else [op]


def _send(
    sqs: SQSClient, url: str, items: list[StreamItem], settings: Settings
) -> list[StreamItem]:
    """SendMessageBatch with retries of the entries SQS refused; return those still refused."""
    fifo = url.endswith(".fifo")
    pending = {str(i): item for i, item in enumerate(items)}
    for _ in range(_SEND_ATTEMPTS):
        entries: list[Any] = []
        for entry_id, item in pending.items():
            entry: dict[str, Any] = {"Id": entry_id, "MessageBody": encode(item.op)}
            if fifo:
                # One group per shard, so a FIFO queue's shards compact in parallel. Routing by
                # the configured count is safe even mid-reshard: the compactor re-routes by the
                # layout it reads, and the group only decides parallelism.
                layout = Layout(item.op.collection, settings.shards_for(item.op.collection))
                entry["MessageGroupId"] = (
                    layout.group_id(item.op.id)
                    if item.op.delta is None
                    else layout.shard_group_id(item.op.delta.shard)
                )
                entry["MessageDeduplicationId"] = item.event_id[:128]
            entries.append(entry)
        out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        failures = out.get("Failed", [])
        for failure in failures:
            log.warning(
                "SQS refused a message: %s %s",
                failure.get("Code"),
                failure.get("Message", ""),
                extra={"sender_fault": failure.get("SenderFault")},
            )
        pending = {f["Id"]: pending[f["Id"]] for f in failures}
        if not pending:
            return []
    return list(pending.values())


def _batches(items: list[StreamItem]) -> list[list[StreamItem]]:
    batches: list[list[StreamItem]] = [[]]
    size = 0
    for item in items:
        item_size = len(encode(item.op).encode())
        if batches[-1] and (len(batches[-1]) == _SQS_BATCH or size + item_size > _SQS_BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return [b for b in batches if b]


def _image(image: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(_b64_to_bytes(v)) for k, v in image.items()}  # type: ignore[arg-type]


def _b64_to_bytes(value: dict[str, Any]) -> dict[str, Any]:
    """Lambda delivers binary attributes as base64 text; the deserializer wants bytes."""
    if "B" in value and isinstance(value["B"], str):
        return {"B": base64.b64decode(value["B"])}
    if "L" in value:
        return {"L": [_b64_to_bytes(v) for v in value["L"]]}
    if "M" in value:
        return {"M": {k: _b64_to_bytes(v) for k, v in value["M"].items()}}
    return value


def _rev(image: dict[str, Any], ddb: dict[str, Any]) -> int:
    rev = image.get("rev")
    if rev is None:
        return int(ddb["SequenceNumber"])
    if not isinstance(rev, Decimal) or rev != rev.to_integral_value() or rev < 0:
        raise InvalidMessage(f"rev must be a non-negative integer, got {rev!r}")
    return int(rev)


def _embedding(value: Any) -> bytes:
    raw = getattr(value, "value", value)  # boto3 wraps binary in Binary
    if isinstance(raw, bytes):
        if len(raw) % 4:
            raise InvalidMessage(f"embedding has {len(raw)} bytes, not a whole number of float32")
        return raw
    if isinstance(raw, list) and all(isinstance(x, Decimal) for x in raw):
        return pack_embedding([float(x) for x in raw])
    raise InvalidMessage("embedding must be B (float32 little-endian) or a list of numbers")


def _metadata(value: Any) -> dict[str, str | int | float | bool] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidMessage(f"metadata is {type(value).__name__}, not a map")
    out: dict[str, str | int | float | bool] = {}
    for key, v in value.items():
        if isinstance(v, Decimal):
            out[key] = int(v) if v == v.to_integral_value() else float(v)
        elif isinstance(v, str | bool):
            out[key] = v
        else:
            raise InvalidMessage(
                f"metadata {key!r} is {type(v).__name__}; use string, number or bool"
            )
    return out
