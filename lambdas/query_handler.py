"""Query Lambda: ``{collection, vector | id, k, where}`` in, the top-k hits over every shard out.

Invoked directly (the event is the request) or through its function URL (a POST whose JSON
body is the request; the URL is guarded by IAM auth). One engine per container keeps each
shard's snapshot open and resyncs it only when that shard's pointer moves.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chroma_compactor.errors import CompactorError
from chroma_compactor.query import QueryEngine
from chroma_compactor.reader import NoSnapshot
from chroma_compactor.settings import Settings
from chroma_compactor.wiring import Clients, build_reader

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="chroma-compactor-query")
MAX_K = 1000


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collection: str = Field(min_length=1)
    vector: list[float] | None = None
    id: str | None = None
    k: int = Field(default=10, ge=1, le=MAX_K)
    where: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.vector is None) == (self.id is None):
            raise ValueError("give exactly one of 'vector' or 'id'")
        return self


@cache
def _engine() -> QueryEngine:
    settings = Settings.from_env()
    reader = build_reader(settings, Clients.create())
    return QueryEngine(reader, Path(settings.cache_dir) / "query")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    via_url = "requestContext" in event
    try:
        request = QueryRequest.model_validate(
            json.loads(event.get("body") or "{}") if via_url else event
        )
        hits = _engine().query(
            request.collection,
            vector=request.vector,
            id=request.id,
            k=request.k,
            where=request.where,
        )
    except (ValidationError, json.JSONDecodeError) as e:
        return _respond(via_url, 400, {"error": "invalid request", "detail": str(e)})
    except NoSnapshot as e:
        return _respond(via_url, 404, {"error": str(e)})
    except CompactorError as e:
        return _respond(via_url, 400, {"error": str(e)})
    return _respond(via_url, 200, {"hits": [asdict(h) for h in hits]})


def _respond(via_url: bool, status: int, body: dict[str, Any]) -> dict[str, Any]:
    if status != 200:
        logger.warning("query refused", extra={"status": status, **body})
    if not via_url:
        return {"statusCode": status, **body}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
