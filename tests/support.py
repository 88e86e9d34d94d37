"""Helpers the tests share: driving the pipeline as Lambda would, and reading its state back."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from chroma_compactor import ops
from chroma_compactor.cycle import Compactor, CycleReport, Hooks, run_cycle
from chroma_compactor.queue import QueueMessage
from chroma_compactor.reader import Reader
from chroma_compactor.stream_checkpoint import forward_once
from chroma_compactor.validate import EMBEDDING_ATOL, EMBEDDING_RTOL
from chroma_compactor.wiring import Clients, build_compactor

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.forwarder import ForwardResult
    from chroma_compactor.resources import CreatedPipeline, PipelineNames
    from chroma_compactor.settings import Settings

DIM = 8
_EXPORT_PAGE = 5_000


class FakeClock:
    """Wall-clock time that tests can push forward to expire leases on demand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def vector(seed: int, dim: int = DIM) -> np.ndarray[Any, np.dtype[np.float32]]:
    rng = np.random.default_rng(seed)
    return rng.random(dim, dtype=np.float32)


@dataclass
class Pipeline:
    clients: Clients
    names: PipelineNames
    created: CreatedPipeline
    settings: Settings
    clock: FakeClock
    tmp: Path

    def compactor(self, name: str, hooks: Hooks | None = None) -> Compactor:
        """A compactor with its own /tmp cache, as a separate Lambda container would have."""
        settings = self.settings.model_copy(update={"cache_dir": str(self.tmp / f"cache-{name}")})
        return build_compactor(settings, self.clients, hooks=hooks, clock=self.clock)

    def reader(self) -> Reader:
        c = self.compactor("reader")
        return Reader(c.pointers, c.store, self.tmp / "reader-cache", c.layouts)

    # -- writing ----------------------------------------------------------------------------

    def put(
        self,
        collection: str,
        id_: str,
        rev: int,
        seed: int,
        document: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        item: dict[str, Any] = {
            "collection": {"S": collection},
            "id": {"S": id_},
            "rev": {"N": str(rev)},
            "embedding": {"B": vector(seed).tobytes()},
        }
        if document is not None:
            item["document"] = {"S": document}
        if metadata is not None:
            item["metadata"] = {"M": {k: _attr(v) for k, v in metadata.items()}}
        self.clients.dynamodb.put_item(TableName=self.names.source_table, Item=item)

    def delete(self, collection: str, id_: str) -> None:
        self.clients.dynamodb.delete_item(
            TableName=self.names.source_table,
            Key={"collection": {"S": collection}, "id": {"S": id_}},
        )

    def send(self, *operations: ops.Operation | str) -> None:
        """Put messages straight on the compaction queue (bodies as the forwarder would make)."""
        for op in operations:
            body = op if isinstance(op, str) else ops.encode(op)
            extra: dict[str, str] = {}
            if self.created.queue_url.endswith(".fifo"):
                group = op if isinstance(op, str) else op.collection
                extra = {
                    "MessageGroupId": f"compaction:{group}"[:128],
                    "MessageDeduplicationId": uuid.uuid4().hex,
                }
            self.clients.sqs.send_message(
                QueueUrl=self.created.queue_url, MessageBody=body, **extra
            )  # type: ignore[arg-type]

    # -- moving data --------------------------------------------------------------------------

    def forward_stream(self) -> ForwardResult:
        return forward_once(self.clients, self.settings)

    def receive_event(self, max_messages: int = 10, visibility: int = 900) -> list[QueueMessage]:
        """What Lambda's event source mapping would hand the compactor."""
        out = self.clients.sqs.receive_message(
            QueueUrl=self.created.queue_url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                queue_url=self.created.queue_url,
                receive_count=int(m["Attributes"]["ApproximateReceiveCount"]),
                from_event=True,
            )
            for m in out.get("Messages", [])
        ]

    def cycle(self, compactor: Compactor, event: list[QueueMessage] | None = None) -> CycleReport:
        messages = self.receive_event() if event is None else event
        return run_cycle(compactor, messages, self.created.queue_url, time.monotonic() + 600)

    def drain(self, compactor: Compactor, max_cycles: int = 50) -> list[CycleReport]:
        reports = []
        for _ in range(max_cycles):
            event = self.receive_event()
            if not event:
                return reports
            reports.append(self.cycle(compactor, event))
        raise AssertionError("queue did not drain")

    # -- reading ------------------------------------------------------------------------------

    def queue_depth(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.clients.sqs.get_queue_attributes(
            QueueUrl=url or self.created.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def table_state(
        self, collection: str
    ) -> dict[str, tuple[bytes, str | None, dict[str, Any] | None]]:
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        state = {}
        pages = self.clients.dynamodb.get_paginator("query").paginate(
            TableName=self.names.source_table,
            KeyConditionExpression="#c = :c",
            ExpressionAttributeNames={"#c": "collection"},
            ExpressionAttributeValues={":c": {"S": collection}},
        )
        for page in pages:
            for raw in page["Items"]:
                if "deleted" in raw:  # a stub a conditional delete left: its rev, no record
                    continue
                if "compaction_run" in raw:  # a bulk load's run item: names a delta, no record
                    continue
                item = {k: des.deserialize(v) for k, v in raw.items()}
                meta = item.get("metadata")
                state[item["id"]] = (
                    bytes(item["embedding"].value),
                    item.get("document"),
                    {k: _plain(v) for k, v in meta.items()} if meta else None,
                )
        return state


def assert_same_records(snapshot: dict[str, Any], table: dict[str, Any]) -> None:
    """Snapshot == table: same ids, documents and metadata; embeddings within Chroma's rounding."""
    assert sorted(snapshot) == sorted(table)
    for id_, (embedding, document, metadata) in table.items():
        got_embedding, got_document, got_metadata = snapshot[id_]
        assert (got_document, got_metadata) == (document, metadata), id_
        assert np.allclose(
            np.frombuffer(got_embedding, dtype="<f4"),
            np.frombuffer(embedding, dtype="<f4"),
            rtol=EMBEDDING_RTOL,
            atol=EMBEDDING_ATOL,
        ), id_


def snapshot_state(
    reader: Reader, collection: str, version: int | None = None
) -> dict[str, tuple[bytes, str | None, dict[str, Any] | None]]:
    state = {}
    with reader.open(collection, version) as col:
        # In pages: one get of every record fails past ~32K ("too many SQL variables").
        for offset in range(0, col.count(), _EXPORT_PAGE):
            got = col.get(
                include=["embeddings", "documents", "metadatas"],
                limit=_EXPORT_PAGE,
                offset=offset,
            )
            for i, id_ in enumerate(got["ids"]):
                state[id_] = (
                    np.asarray(got["embeddings"][i], dtype="<f4").tobytes(),
                    got["documents"][i],
                    got["metadatas"][i] or None,
                )
    return state


def _attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    return {"S": str(value)}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
