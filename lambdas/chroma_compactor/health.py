"""Durable notes of why a partition's cycles failed, for `status` to show.

A corrupt blob, an unreadable format or a failed validation makes a cycle abandon itself and
hand its messages back; without a note, an operator would see only a pointer that stops moving.
The note is the control-table item ``health#<partition>`` (kind, message, time). It is never
part of a commit and never touches the pointer item; a note older than the pointer's last
commit is history, not a current problem, so nothing needs clearing it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)


def health_key(partition: str) -> str:
    return f"health#{partition}"


@dataclass(frozen=True)
class Failure:
    kind: str  # the exception's class name, e.g. SnapshotCorrupt
    message: str
    at_ms: int


class HealthTable:
    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._ddb = dynamodb
        self.table_name = table_name
        self._clock = clock

    def record(self, partition: str, error: Exception) -> None:
        """Best effort: failing to write the note must not hide the failure it describes."""
        try:
            self._ddb.put_item(
                TableName=self.table_name,
                Item={
                    "pk": {"S": health_key(partition)},
                    "kind": {"S": type(error).__name__},
                    "message": {"S": str(error)[:2000]},
                    "at": {"N": str(int(self._clock() * 1000))},
                },
            )
        except (ClientError, BotoCoreError) as e:
            log.warning("could not record the failure of %r: %s", partition, e)

    def last_failure(self, partition: str) -> Failure | None:
        item = self._ddb.get_item(
            TableName=self.table_name, Key={"pk": {"S": health_key(partition)}}
        ).get("Item")
        if not item:
            return None
        return Failure(item["kind"]["S"], item["message"]["S"], int(item["at"]["N"]))
