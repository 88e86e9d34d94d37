"""Read a table's stream from where the last reader stopped, for `forward --once` and local mode.

In AWS the stream event source mapping keeps this position; here it lives in the control table
(``pk = "stream#<shard id>"``, ``seq`` = last forwarded sequence number), so one-shot runs in
separate processes, and a restarted local stack, pick up where the previous one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chroma_compactor.errors import ConfigurationError
from chroma_compactor.forwarder import ForwardResult, forward
from chroma_compactor.streams import lambda_shaped

if TYPE_CHECKING:
    from collections.abc import Callable

    from chroma_compactor.settings import Settings
    from chroma_compactor.wiring import Clients


@dataclass
class _Shard:
    iterator: str | None
    closed: bool = False


class StreamCursor:
    def __init__(self, clients: Clients, settings: Settings) -> None:
        if not settings.source_table_name:
            raise ConfigurationError("SOURCE_TABLE_NAME is not set: no stream to read")
        self._clients = clients
        self._control = settings.control_table_name
        table = clients.dynamodb.describe_table(TableName=settings.source_table_name)["Table"]
        arn = table.get("LatestStreamArn")
        if not arn:
            raise ConfigurationError(f"table {settings.source_table_name!r} has no stream enabled")
        self.stream_arn = arn
        self._shards: dict[str, _Shard] = {}

    def read(self, limit: int) -> dict[str, list[dict[str, Any]]]:
        """New records per shard since the checkpoint (at most ``limit`` per shard)."""
        self._discover()
        out: dict[str, list[dict[str, Any]]] = {}
        for shard_id, shard in self._shards.items():
            if shard.closed or shard.iterator is None:
                continue
            got = self._clients.streams.get_records(ShardIterator=shard.iterator, Limit=limit)
            shard.iterator = got.get("NextShardIterator")
            shard.closed = shard.iterator is None
            records = [lambda_shaped(r, self.stream_arn) for r in got.get("Records", [])]
            if records:
                out[shard_id] = records
        return out

    def advance(self, shard_id: str, sequence_number: str) -> None:
        self._clients.dynamodb.put_item(
            TableName=self._control,
            Item={"pk": {"S": f"stream#{shard_id}"}, "seq": {"S": sequence_number}},
        )

    def rewind(self, shard_id: str) -> None:
        """Forget the in-memory position: the next read starts again after the checkpoint."""
        self._shards.pop(shard_id, None)

    def skip_to_end(self) -> int:
        """Checkpoint every shard at its newest record (after restoring a table's items)."""
        skipped = 0
        while batch := self.read(1000):
            for shard_id, records in batch.items():
                self.advance(shard_id, records[-1]["dynamodb"]["SequenceNumber"])
                skipped += len(records)
        return skipped

    def _discover(self) -> None:
        description = self._clients.streams.describe_stream(StreamArn=self.stream_arn)
        for shard in description["StreamDescription"].get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id in self._shards:
                continue
            seq = self._checkpoint(shard_id)
            kwargs: dict[str, Any] = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq}
                if seq
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self._clients.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, **kwargs
            )["ShardIterator"]
            self._shards[shard_id] = _Shard(iterator)

    def _checkpoint(self, shard_id: str) -> str | None:
        item = self._clients.dynamodb.get_item(
            TableName=self._control, Key={"pk": {"S": f"stream#{shard_id}"}}, ConsistentRead=True
        ).get("Item")
        return item["seq"]["S"] if item else None


def pump(
    cursor: StreamCursor,
    batch_size: int,
    handle: Callable[[list[dict[str, Any]]], list[str]],
) -> tuple[int, list[str]]:
    """Hand new records to ``handle`` in batches, checkpointing what it accepted.

    ``handle`` returns the sequence numbers it failed (as a stream handler's batchItemFailures);
    like the event source mapping, the shard is retried from the lowest failure next time.
    Returns (records handed over, failed sequence numbers).
    """
    handled, failed = 0, []
    for shard_id, records in cursor.read(batch_size * 10).items():
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            failures = handle(batch)
            handled += len(batch)
            if failures:
                lowest = min(int(s) for s in failures)
                accepted = [r for r in batch if int(r["dynamodb"]["SequenceNumber"]) < lowest]
                if accepted:
                    cursor.advance(shard_id, accepted[-1]["dynamodb"]["SequenceNumber"])
                cursor.rewind(shard_id)
                failed.extend(failures)
                break
            cursor.advance(shard_id, batch[-1]["dynamodb"]["SequenceNumber"])
    return handled, failed


def forward_once(clients: Clients, settings: Settings) -> ForwardResult:
    """Forward every record that arrived since the last run (``chroma-compactor forward --once``)."""
    cursor = StreamCursor(clients, settings)
    total = ForwardResult()

    def handle(batch: list[dict[str, Any]]) -> list[str]:
        result = forward(clients.sqs, settings, batch)
        total.sent += result.sent
        total.skipped += result.skipped
        return result.failed_sequence_numbers

    while True:
        handled, failed = pump(cursor, settings.stream_batch_size, handle)
        total.failed_sequence_numbers.extend(failed)
        if not handled or failed:
            return total
