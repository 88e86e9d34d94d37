"""One typed settings model for the Lambdas, the local runner and the Pulumi program.

Everything that names a resource or sets a limit is read here, once per process, so that the
names the infrastructure deploys and the names the code reads can never drift apart.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chroma_compactor.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

# Environment variable names: the contract between the deployment and the code.
SOURCE_TABLE_NAME = "SOURCE_TABLE_NAME"
CONTROL_TABLE_NAME = "CONTROL_TABLE_NAME"
SNAPSHOT_BUCKET = "SNAPSHOT_BUCKET"
SNAPSHOT_PREFIX = "SNAPSHOT_PREFIX"
COMPACTION_QUEUE_URL = "COMPACTION_QUEUE_URL"
COMPACTION_QUEUE_URLS = "COMPACTION_QUEUE_URLS"
QUEUE_TYPE = "QUEUE_TYPE"
MAX_MESSAGES_PER_CYCLE = "MAX_MESSAGES_PER_CYCLE"
FETCH_SECONDS = "FETCH_SECONDS"
LEASE_SECONDS = "LEASE_SECONDS"
LEASE_WAIT_SECONDS = "LEASE_WAIT_SECONDS"
RETAIN_VERSIONS = "RETAIN_VERSIONS"
TOMBSTONE_HORIZON_DAYS = "TOMBSTONE_HORIZON_DAYS"
CACHE_DIR = "CACHE_DIR"
CHUNK_BYTES = "CHUNK_BYTES"
HNSW_SPACE = "HNSW_SPACE"


class QueueType(StrEnum):
    STANDARD = "standard"
    FIFO = "fifo"


class Settings(BaseModel):
    """What a process needs to know about its pipeline. Immutable once loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_table_name: str = ""
    control_table_name: str
    snapshot_bucket: str
    snapshot_prefix: str = "snapshots"
    compaction_queue_url: str = ""
    compaction_queue_urls: dict[str, str] = Field(default_factory=dict)
    queue_type: QueueType = QueueType.STANDARD
    # Greedy fetch: stop at this many messages or after this many seconds, whichever is first.
    max_messages_per_cycle: int = Field(default=2000, ge=1, le=100_000)
    fetch_seconds: float = Field(default=5.0, ge=0)
    # A short lease makes a crashed holder cost little; the heartbeat keeps a live one.
    lease_seconds: float = Field(default=60.0, gt=1)
    lease_wait_seconds: float = Field(default=75.0, ge=0)
    retain_versions: int = Field(default=5, ge=1)
    # Longer than the DLQ's 14-day retention, so no redriven message can outlive its tombstone.
    tombstone_horizon_days: float = Field(default=15.0, gt=14)
    cache_dir: str = "/tmp/chroma-compactor"
    chunk_bytes: int = Field(default=1 << 20, ge=4096)
    hnsw_space: str = "cosine"

    @model_validator(mode="after")
    def _one_queue_route(self) -> Self:
        if self.compaction_queue_url and self.compaction_queue_urls:
            raise ValueError(
                f"set either {COMPACTION_QUEUE_URL} or {COMPACTION_QUEUE_URLS}, not both"
            )
        return self

    def queue_url_for(self, collection: str) -> str:
        """The queue that carries a collection's operations."""
        if self.compaction_queue_urls:
            try:
                return self.compaction_queue_urls[collection]
            except KeyError:
                known = ", ".join(sorted(self.compaction_queue_urls)) or "none"
                raise ConfigurationError(
                    f"no queue for collection {collection!r} in {COMPACTION_QUEUE_URLS} "
                    f"(known: {known})"
                ) from None
        if not self.compaction_queue_url:
            raise ConfigurationError(f"{COMPACTION_QUEUE_URL} is not set")
        return self.compaction_queue_url

    def queue_urls(self) -> list[str]:
        if self.compaction_queue_urls:
            return sorted(set(self.compaction_queue_urls.values()))
        return [self.compaction_queue_url] if self.compaction_queue_url else []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Load from the environment, failing with the names of whatever is missing or wrong."""
        env = os.environ if environ is None else environ
        fields: dict[str, object] = {}
        for name in _ENV_FIELDS:
            if name in env and env[name] != "":
                fields[name.lower()] = env[name]
        if COMPACTION_QUEUE_URLS in fields:
            try:
                fields["compaction_queue_urls"] = json.loads(
                    str(fields[COMPACTION_QUEUE_URLS.lower()])
                )
            except json.JSONDecodeError as e:
                raise ConfigurationError(
                    f"{COMPACTION_QUEUE_URLS} is not a JSON object: {e}"
                ) from e
        try:
            return cls.model_validate(fields)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
                for err in e.errors()
            )
            raise ConfigurationError(f"invalid configuration: {problems}") from e

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (for Lambda and local workers)."""
        env: dict[str, str] = {}
        for name in _ENV_FIELDS:
            value = getattr(self, name.lower())
            if name == COMPACTION_QUEUE_URLS:
                if value:
                    env[name] = json.dumps(value, sort_keys=True)
            elif value != "":
                env[name] = str(value)
        return env


_ENV_FIELDS = (
    SOURCE_TABLE_NAME,
    CONTROL_TABLE_NAME,
    SNAPSHOT_BUCKET,
    SNAPSHOT_PREFIX,
    COMPACTION_QUEUE_URL,
    COMPACTION_QUEUE_URLS,
    QUEUE_TYPE,
    MAX_MESSAGES_PER_CYCLE,
    FETCH_SECONDS,
    LEASE_SECONDS,
    LEASE_WAIT_SECONDS,
    RETAIN_VERSIONS,
    TOMBSTONE_HORIZON_DAYS,
    CACHE_DIR,
    CHUNK_BYTES,
    HNSW_SPACE,
)
