"""DynamoDB Streams records as a Lambda event would carry them.

boto3 returns binary attributes as bytes and the creation time as a datetime; Lambda delivers
base64 text and epoch seconds. Local mode and tests reshape records so the forwarder sees
exactly what it sees in AWS.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any


def lambda_shaped(record: Any, stream_arn: str) -> dict[str, Any]:
    shaped: dict[str, Any] = _jsonable(record)
    shaped["eventSourceARN"] = stream_arn
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
