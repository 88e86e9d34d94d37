"""The pointer: which snapshot version of a collection is current.

Control-table item ``pk = "pointer#<collection>"`` with ``version``, ``manifest_key``,
``record_count``, ``token`` (the fencing token that wrote it) and ``updated_at`` (epoch ms).
It is written in exactly one place, ``commit``: one transaction that checks the lease item and
compare-and-sets the pointer item. TransactWriteItems cannot touch one item twice, which is why
lease and pointer are separate items.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chroma_compactor.errors import CommitRejected

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient

    from chroma_compactor.lease import Lease, LeaseTable


def pointer_key(collection: str) -> str:
    return f"pointer#{collection}"


@dataclass(frozen=True)
class Pointer:
    collection: str
    version: int  # 0: nothing committed yet
    manifest_key: str | None = None
    record_count: int = 0
    token: int = 0
    updated_at_ms: int = 0


class PointerTable:
    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._ddb = dynamodb
        self.table_name = table_name
        self._clock = clock

    def read(self, collection: str) -> Pointer:
        item = self._ddb.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": pointer_key(collection)}},
            ConsistentRead=True,
        ).get("Item")
        if not item or "manifest_key" not in item:
            return Pointer(
                collection, 0
            )  # nothing, or a never-committed partition `reshard` retired
        return Pointer(
            collection=collection,
            version=int(item["version"]["N"]),
            manifest_key=item["manifest_key"]["S"],
            record_count=int(item.get("record_count", {"N": "0"})["N"]),
            token=int(item.get("token", {"N": "0"})["N"]),
            updated_at_ms=int(item.get("updated_at", {"N": "0"})["N"]),
        )

    def collections(self) -> list[str]:
        """Every partition with a pointer, a lease or a failure note (a scan: for operators).

        A lease or a note without a pointer is a collection whose first cycle is running,
        crashed or failed.
        """
        names, retired = self._scan()
        return sorted(names - retired)

    def retired(self) -> list[str]:
        """Partitions of layouts `reshard` replaced: their snapshots serve nothing any more."""
        return sorted(self._scan()[1])

    def _scan(self) -> tuple[set[str], set[str]]:
        names: set[str] = set()
        retired: set[str] = set()
        for page in self._ddb.get_paginator("scan").paginate(
            TableName=self.table_name, ProjectionExpression="pk, retired"
        ):
            for item in page.get("Items", []):
                kind, _, name = item["pk"]["S"].partition("#")
                if kind in ("pointer", "lease", "health"):
                    names.add(name)
                if kind == "pointer" and "retired" in item:
                    retired.add(name)
        return names, retired

    def commit(
        self,
        leases: LeaseTable,
        lease: Lease,
        *,
        expected_version: int,
        new_version: int,
        manifest_key: str,
        record_count: int,
    ) -> Pointer:
        """Move the pointer from ``expected_version`` to ``new_version`` while we hold the lease.

        Raises CommitRejected if either condition fails; then nothing was written.
        """
        now = int(self._clock() * 1000)
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": pointer_key(lease.collection)}},
            "UpdateExpression": (
                "SET version = :new, manifest_key = :key, record_count = :count, "
                "#token = :token, updated_at = :now"
            ),
            "ExpressionAttributeNames": {"#token": "token"},
            "ExpressionAttributeValues": {
                ":new": {"N": str(new_version)},
                ":key": {"S": manifest_key},
                ":count": {"N": str(record_count)},
                ":token": {"N": str(lease.token)},
                ":now": {"N": str(now)},
            },
        }
        update.update(_version_condition(expected_version))
        update["ExpressionAttributeValues"].update(_version_values(expected_version))
        self._transact(leases, lease, {"Update": update}, expected_version)
        return Pointer(lease.collection, new_version, manifest_key, record_count, lease.token, now)

    def confirm(self, leases: LeaseTable, lease: Lease, version: int) -> None:
        """Prove, without writing, that we still hold the lease and the pointer is at ``version``.

        A cycle whose ops were all stale or not-found publishes nothing, but must still know its
        verdicts were made against the current version before it deletes the messages.
        """
        check: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": pointer_key(lease.collection)}},
            "ExpressionAttributeValues": _version_values(version),
        }
        check.update(_version_condition(version))
        if not check["ExpressionAttributeValues"]:
            del check["ExpressionAttributeValues"]
        self._transact(leases, lease, {"ConditionCheck": check}, version)

    def _transact(
        self, leases: LeaseTable, lease: Lease, pointer_item: dict[str, Any], expected: int
    ) -> None:
        try:
            items: list[Any] = [leases.condition_check(lease), pointer_item]
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as e:
            if e.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code", "None") for r in e.response.get("CancellationReasons", [])]
            lease_reason = reasons[0] if reasons else "unknown"
            pointer_reason = reasons[1] if len(reasons) > 1 else "unknown"
            raise CommitRejected(
                f"commit of {lease.collection!r} rejected: lease check {lease_reason} "
                f"(token {lease.token}), pointer check {pointer_reason} (expected version {expected})"
            ) from e


def _version_condition(expected: int) -> dict[str, str]:
    # A pointer retired by `reshard` belongs to a layout that no longer exists: a compactor that
    # still routes by the old layout must not commit to it.
    if expected == 0:
        return {
            "ConditionExpression": "attribute_not_exists(version) AND attribute_not_exists(retired)"
        }
    return {"ConditionExpression": "version = :expected AND attribute_not_exists(retired)"}


def _version_values(expected: int) -> dict[str, dict[str, str]]:
    return {} if expected == 0 else {":expected": {"N": str(expected)}}
