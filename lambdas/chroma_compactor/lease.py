"""Lease lock with a fencing token, kept alive by a heartbeat.

The lease saves wasted work; it does not by itself make commits safe. Safety comes from the
commit transaction, which re-checks owner, token and expiry next to the pointer CAS.

Control-table item ``pk = "lease#<collection>"``: ``owner``, ``token`` (grows by one on every
acquisition, so a stale holder can always be told apart), ``expires_at`` (epoch ms) and ``ttl``
(epoch s, for DynamoDB TTL to sweep leases of collections that are gone).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chroma_compactor.errors import LeaseBusy, LeaseLost

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient

_TTL_SLACK_S = 86_400


def lease_key(collection: str) -> str:
    return f"lease#{collection}"


@dataclass(frozen=True)
class Lease:
    collection: str
    owner: str
    token: int
    expires_at_ms: int


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease now (for status and error messages)."""

    owner: str | None
    token: int
    expires_at_ms: int
    acquired_at_ms: int = 0


class LeaseTable:
    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._ddb = dynamodb
        self.table_name = table_name
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def acquire(self, collection: str, owner: str, seconds: float) -> Lease:
        """Take the lease if it is free, expired, or already ours; raise LeaseBusy otherwise."""
        now = self.now_ms()
        expires = now + int(seconds * 1000)
        try:
            out = self._ddb.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": lease_key(collection)}},
                UpdateExpression=(
                    "SET #owner = :owner, expires_at = :exp, acquired_at = :now, #ttl = :ttl "
                    "ADD #token :one"
                ),
                ConditionExpression="attribute_not_exists(#owner) OR expires_at < :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner", "#token": "token", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":exp": {"N": str(expires)},
                    ":ttl": {"N": str(expires // 1000 + _TTL_SLACK_S)},
                    ":now": {"N": str(now)},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                holder = self.holder(collection)
                raise LeaseBusy(
                    f"lease of {collection!r} is held by {holder.owner} (token {holder.token}) "
                    f"for another {max(0, holder.expires_at_ms - now) / 1000:.1f}s"
                ) from e
            raise
        return Lease(collection, owner, int(out["Attributes"]["token"]["N"]), expires)

    def acquire_waiting(
        self,
        collection: str,
        owner: str,
        seconds: float,
        wait_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Lease:
        """Acquire, waiting up to ``wait_seconds`` for a crashed holder's lease to run out.

        With reserved concurrency 1 a busy lease almost always belongs to a dead invocation;
        waiting for it beats sending the batch back, which would spend a receive count.
        """
        deadline = self._clock() + wait_seconds
        while True:
            try:
                return self.acquire(collection, owner, seconds)
            except LeaseBusy:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise
                holder = self.holder(collection)
                until_free = (holder.expires_at_ms - self.now_ms()) / 1000 + 0.05
                sleep(max(0.05, min(remaining, until_free, 5.0)))

    def extend(self, lease: Lease, seconds: float) -> Lease:
        now = self.now_ms()
        expires = now + int(seconds * 1000)
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": lease_key(lease.collection)}},
                UpdateExpression="SET expires_at = :exp, #ttl = :ttl",
                ConditionExpression="#owner = :owner AND #token = :token AND expires_at >= :now",
                ExpressionAttributeNames={"#owner": "owner", "#token": "token", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":owner": {"S": lease.owner},
                    ":token": {"N": str(lease.token)},
                    ":exp": {"N": str(expires)},
                    ":ttl": {"N": str(expires // 1000 + _TTL_SLACK_S)},
                    ":now": {"N": str(now)},
                },
            )
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LeaseLost(
                    f"lease of {lease.collection!r} (token {lease.token}) expired or changed hands"
                ) from e
            raise
        return Lease(lease.collection, lease.owner, lease.token, expires)

    def release(self, lease: Lease) -> bool:
        """Give the lease up early; False if it was no longer ours (nothing to give up)."""
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": lease_key(lease.collection)}},
                UpdateExpression="REMOVE #owner SET expires_at = :zero",
                ConditionExpression="#owner = :owner AND #token = :token",
                ExpressionAttributeNames={"#owner": "owner", "#token": "token"},
                ExpressionAttributeValues={
                    ":owner": {"S": lease.owner},
                    ":token": {"N": str(lease.token)},
                    ":zero": {"N": "0"},
                },
            )
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def holder(self, collection: str) -> LeaseHolder:
        item = self._ddb.get_item(
            TableName=self.table_name, Key={"pk": {"S": lease_key(collection)}}, ConsistentRead=True
        ).get("Item", {})
        return LeaseHolder(
            owner=item["owner"]["S"] if "owner" in item else None,
            token=int(item["token"]["N"]) if "token" in item else 0,
            expires_at_ms=int(item["expires_at"]["N"]) if "expires_at" in item else 0,
            acquired_at_ms=int(item["acquired_at"]["N"]) if "acquired_at" in item else 0,
        )

    def condition_check(self, lease: Lease) -> dict[str, object]:
        """The transaction item that proves we still hold the lease at commit time."""
        return {
            "ConditionCheck": {
                "TableName": self.table_name,
                "Key": {"pk": {"S": lease_key(lease.collection)}},
                "ConditionExpression": "#owner = :owner AND #token = :token AND expires_at > :now",
                "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
                "ExpressionAttributeValues": {
                    ":owner": {"S": lease.owner},
                    ":token": {"N": str(lease.token)},
                    ":now": {"N": str(self.now_ms())},
                },
            }
        }


class Heartbeat:
    """Extends a lease every third of its length from a background thread.

    A failed extension does not raise in the thread: it marks the lease lost, and the cycle
    checks ``ensure_held()`` between steps. The commit's condition check is the last word.
    """

    def __init__(self, table: LeaseTable, lease: Lease, seconds: float) -> None:
        self._table = table
        self._seconds = seconds
        self.lease = lease
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            try:
                self.lease = self._table.extend(self.lease, self._seconds)
            except LeaseLost as e:
                self._lost = str(e)
                return
            except (ClientError, BotoCoreError):
                continue  # transient: try again next beat; expiry is checked at commit anyway

    def ensure_held(self) -> None:
        if self._lost is not None:
            raise LeaseLost(self._lost)
