"""Writing and reading the source table from a test process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable


def put_records(ddb: Any, table: str, collection: str, numbers: Iterable[int]) -> None:
    for i in numbers:
        ddb.put_item(
            TableName=table,
            Item={
                "collection": {"S": collection},
                "id": {"S": f"n-{i}"},
                "rev": {"N": "1"},
                "embedding": {"B": np.random.default_rng(i).random(8, dtype=np.float32).tobytes()},
                "document": {"S": f"note {i}"},
            },
        )


def table_ids(ddb: Any, table: str, collection: str) -> list[str]:
    items = ddb.query(
        TableName=table,
        KeyConditionExpression="#c = :c",
        ExpressionAttributeNames={"#c": "collection"},
        ExpressionAttributeValues={":c": {"S": collection}},
    )["Items"]
    return [item["id"]["S"] for item in items]
