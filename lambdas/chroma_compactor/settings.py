"""One typed settings model for the Lambdas, the local runner and the Pulumi program.

Everything that names a resource or sets a limit is read here, once per process, so that the
names the infrastructure deploys and the names the code reads can never drift apart.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chroma_compactor.delta import DELTA_PREFIX
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
COMPACTION_BATCH_SIZE = "COMPACTION_BATCH_SIZE"
COMPACTION_BATCHING_WINDOW_SECONDS = "COMPACTION_BATCHING_WINDOW_SECONDS"
STREAM_BATCH_SIZE = "STREAM_BATCH_SIZE"
COLLECTION_SHARDS = "COLLECTION_SHARDS"
VISIBILITY_MARGIN_SECONDS = "VISIBILITY_MARGIN_SECONDS"
SNAPSHOT_TRANSFER = "SNAPSHOT_TRANSFER"

# Lambda's limits for an SQS event source mapping.
FIFO_MAX_BATCH_SIZE = 10
STANDARD_MAX_BATCH_SIZE = 10_000
MAX_BATCHING_WINDOW_SECONDS = 300


class QueueType(StrEnum):
    STANDARD = "standard"
    FIFO = "fifo"


class SnapshotTransfer(StrEnum):
    """How a cycle moves its snapshot: only what changed, or all of it (the design we replace,
    kept as a mode so benchmarks measure it with the very same compactor)."""

    INCREMENTAL = "incremental"
    WHOLE = "whole"


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
    max_messages_per_cycle: int = Field(default=10_000, ge=1, le=100_000)
    fetch_seconds: float = Field(default=10.0, ge=0)
    # A short lease makes a crashed holder cost little; the heartbeat keeps a live one.
    lease_seconds: float = Field(default=60.0, gt=1)
    lease_wait_seconds: float = Field(default=75.0, ge=0)
    # Greedily fetched messages stay hidden this long past the invocation's deadline: long enough
    # that a slow delete cannot race their return, short enough that a crash costs little.
    visibility_margin_seconds: float = Field(default=60.0, ge=1)
    retain_versions: int = Field(default=5, ge=1)
    # Longer than the DLQ's 14-day retention, so no redriven message can outlive its tombstone.
    tombstone_horizon_days: float = Field(default=15.0, gt=14)
    cache_dir: str = "/tmp/chroma-compactor"
    chunk_bytes: int = Field(default=1 << 20, ge=4096)
    hnsw_space: str = "cosine"
    snapshot_transfer: SnapshotTransfer = SnapshotTransfer.INCREMENTAL
    # The event source mappings (deployed by Pulumi, imitated by local mode's pollers).
    # None means: the default for the queue type (100 and 5 s standard, 10 and no window FIFO).
    compaction_batch_size: int | None = Field(default=None, ge=1, le=STANDARD_MAX_BATCH_SIZE)
    compaction_batching_window_seconds: int | None = Field(
        default=None, ge=0, le=MAX_BATCHING_WINDOW_SECONDS
    )
    stream_batch_size: int = Field(default=100, ge=1, le=10_000)
    # Shards of a *new* collection (default 1); an existing one keeps its layout until resharded.
    collection_shards: dict[str, Annotated[int, Field(ge=1, le=256)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_queue_route(self) -> Self:
        if self.compaction_queue_url and self.compaction_queue_urls:
            raise ValueError(
                f"set either {COMPACTION_QUEUE_URL} or {COMPACTION_QUEUE_URLS}, not both"
            )
        return self

    @model_validator(mode="after")
    def _snapshots_apart_from_deltas(self) -> Self:
        # Bulk loads' deltas live under deltas/, which a lifecycle rule expires.
        if self.snapshot_prefix.strip("/") == DELTA_PREFIX:
            raise ValueError(
                f"{SNAPSHOT_PREFIX} may not be {DELTA_PREFIX!r}: that prefix holds bulk loads' "
                "deltas, which expire"
            )
        return self

    @model_validator(mode="after")
    def _event_source_limits(self) -> Self:
        if self.queue_type is QueueType.FIFO:
            if self.compaction_batching_window_seconds:
                raise ValueError(
                    f"{COMPACTION_BATCHING_WINDOW_SECONDS} must be 0 with a FIFO queue: Lambda "
                    "rejects a batching window on FIFO event sources (use a standard queue to "
                    "batch by time)"
                )
            if (self.compaction_batch_size or 0) > FIFO_MAX_BATCH_SIZE:
                raise ValueError(
                    f"{COMPACTION_BATCH_SIZE} is at most {FIFO_MAX_BATCH_SIZE} with a FIFO queue "
                    f"(got {self.compaction_batch_size}); greedy fetch takes more per cycle"
                )
        elif (self.compaction_batch_size or 0) > 10 and self.batching_window == 0:
            raise ValueError(
                f"{COMPACTION_BATCH_SIZE} above 10 needs {COMPACTION_BATCHING_WINDOW_SECONDS} >= 1"
            )
        return self

    @property
    def batch_size(self) -> int:
        """The compactor's event source mapping batch size, after queue-type defaults."""
        if self.compaction_batch_size is not None:
            return self.compaction_batch_size
        return FIFO_MAX_BATCH_SIZE if self.queue_type is QueueType.FIFO else 100

    @property
    def batching_window(self) -> int:
        """Seconds the event source mapping gathers messages before invoking (0: none)."""
        if self.compaction_batching_window_seconds is not None:
            return self.compaction_batching_window_seconds
        return 0 if self.queue_type is QueueType.FIFO else 5

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

    def shards_for(self, collection: str) -> int:
        return self.collection_shards.get(collection, 1)

    @property
    def compactor_concurrency(self) -> int:
        """One compactor per shard group (FIFO runs groups in parallel); at least one.

        Infra reserves this concurrency for the compactor; local mode runs as many pollers.
        """
        return max(1, sum(self.collection_shards.values()))

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
        for name in _JSON_FIELDS:
            if name.lower() in fields:
                try:
                    fields[name.lower()] = json.loads(str(fields[name.lower()]))
                except json.JSONDecodeError as e:
                    raise ConfigurationError(f"{name} is not a JSON object: {e}") from e
        try:
            return cls.model_validate(fields)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                if err["loc"]
                else str(err["msg"]).removeprefix("Value error, ")
                for err in e.errors()
            )
            raise ConfigurationError(f"invalid configuration: {problems}") from e

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (for Lambda and local workers)."""
        env: dict[str, str] = {}
        for name in _ENV_FIELDS:
            value = getattr(self, name.lower())
            if name in _JSON_FIELDS:
                if value:
                    env[name] = json.dumps(value, sort_keys=True)
            elif value is not None and value != "":
                env[name] = str(value)
        return env


_JSON_FIELDS = (COMPACTION_QUEUE_URLS, COLLECTION_SHARDS)
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
    COMPACTION_BATCH_SIZE,
    COMPACTION_BATCHING_WINDOW_SECONDS,
    STREAM_BATCH_SIZE,
    COLLECTION_SHARDS,
    VISIBILITY_MARGIN_SECONDS,
    SNAPSHOT_TRANSFER,
)
