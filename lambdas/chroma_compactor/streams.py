"""Read a DynamoDB stream the way Lambda's event source mapping would, for local mode and tests.

Records come back shaped like a Lambda event's: binary attributes as base64 text, the creation
time as epoch seconds, ``eventSourceARN`` set. The reader keeps one iterator per shard, so
repeated ``poll`` calls return each record once, in order within its shard.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient


class StreamReader:
    def __init__(self, streams: DynamoDBStreamsClient, stream_arn: str) -> None:
        self._streams = streams
        self.stream_arn = stream_arn
        self._iterators: dict[str, str | None] = {}

    def poll(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Every record that arrived since the last poll (up to ``limit`` per shard)."""
        self._discover_shards()
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            out = self._streams.get_records(ShardIterator=iterator, Limit=limit)
            self._iterators[shard_id] = out.get("NextShardIterator")
            records.extend(self._lambda_shaped(r) for r in out.get("Records", []))
        return records

    def _discover_shards(self) -> None:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]

    def _lambda_shaped(self, record: Any) -> dict[str, Any]:
        shaped: dict[str, Any] = _jsonable(record)
        shaped["eventSourceARN"] = self.stream_arn
        return shaped


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value
