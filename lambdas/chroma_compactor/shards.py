"""Shards: a collection split by a stable hash of the id, each shard its own partition.

A *partition* is what the commit protocol works on: one lease, one pointer, one snapshot and,
on FIFO queues, one message group. An unsharded collection is a single partition named like the
collection, so collections created before sharding existed keep their pointers and snapshots.
A collection of N > 1 shards has partitions ``<collection>.s<i>-of-<N>``; that suffix is
reserved (``ops`` refuses collection names that end with it).

The layout (how many shards) lives in the control table, item ``layout#<collection>``, written
once when a collection is first compacted (from the ``COLLECTION_SHARDS`` setting) and changed
only by ``reshard``. Configuration decides new collections; the table decides existing ones, so
a config edit can never strand a collection's data under partitions nobody reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from chroma_compactor.pointer import PointerTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_SHARDS = 256


def shard_of(id_: str, shards: int) -> int:
    """Stable across processes, machines and Python versions (never the salted ``hash()``)."""
    if shards == 1:
        return 0
    digest = hashlib.blake2b(id_.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def partition_name(collection: str, shard: int, shards: int) -> str:
    return collection if shards == 1 else f"{collection}.s{shard}-of-{shards}"


def layout_key(collection: str) -> str:
    return f"layout#{collection}"


@dataclass(frozen=True)
class Layout:
    collection: str
    shards: int = 1

    @property
    def partitions(self) -> list[str]:
        return [partition_name(self.collection, i, self.shards) for i in range(self.shards)]

    def partition_of(self, id_: str) -> str:
        return partition_name(self.collection, shard_of(id_, self.shards), self.shards)

    def group_id(self, id_: str) -> str:
        """The FIFO message group: one per shard, so shards of a FIFO queue compact in parallel."""
        return self.shard_group_id(shard_of(id_, self.shards))

    def shard_group_id(self, shard: int) -> str:
        if self.shards == 1:
            return f"compaction:{self.collection}"[:128]
        return f"compaction:{self.collection}:{shard}"[:128]


class LayoutTable:
    """Reads layouts from the control table, creating a collection's on first use."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._ddb = dynamodb
        self.table_name = table_name

    def read(self, collection: str) -> Layout | None:
        item = self._ddb.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": layout_key(collection)}},
            ConsistentRead=True,
        ).get("Item")
        return Layout(collection, int(item["shards"]["N"])) if item else None

    def ensure(self, collection: str, configured: int) -> Layout:
        """The collection's layout; a new collection gets ``configured`` shards.

        A collection that already has an unsharded snapshot but no layout item (it predates
        sharding) stays at one shard until resharded, whatever the configuration says.
        """
        existing = self.read(collection)
        if existing is not None:
            return existing
        shards = configured
        if shards > 1 and PointerTable(self._ddb, self.table_name).read(collection).version > 0:
            shards = 1
        try:
            self._ddb.put_item(
                TableName=self.table_name,
                Item={"pk": {"S": layout_key(collection)}, "shards": {"N": str(shards)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raced = self.read(collection)
            assert raced is not None  # the condition failed because the item exists
            return raced
        return Layout(collection, shards)
