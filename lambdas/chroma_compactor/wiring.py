"""Build the real thing from settings: boto3 clients and the compactor. The only place that
creates AWS clients; everything below takes them as arguments.

boto3 reads ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) by itself, which is how
local mode points every client at moto's server: no endpoint is written in code.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from chroma_compactor.cycle import Compactor, Hooks
from chroma_compactor.health import HealthTable
from chroma_compactor.lease import LeaseTable
from chroma_compactor.pointer import PointerTable
from chroma_compactor.reader import Reader
from chroma_compactor.shards import LayoutTable
from chroma_compactor.snapshot_store import SnapshotStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from chroma_compactor.settings import Settings

# Standard retry mode: jittered backoff on throttling and 5xx, a retry quota against storms.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    # Blobs carry our own SHA-256 on upload and are verified by it on download; botocore's extra
    # CRC32 per request adds nothing (and moto's in-process S3 stores it unreliably under
    # concurrent uploads: docs/traits.md).
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    max_pool_connections=32,
    connect_timeout=5,
    read_timeout=30,
)


@dataclass(frozen=True)
class Clients:
    dynamodb: DynamoDBClient
    s3: S3Client
    sqs: SQSClient
    streams: DynamoDBStreamsClient
    cloudwatch: Any  # only status reads a metric; no stubs package pinned for it

    @classmethod
    def create(cls, session: boto3.Session | None = None) -> Clients:
        s = session or boto3.Session()
        return cls(
            dynamodb=s.client("dynamodb", config=CLIENT_CONFIG),
            s3=s.client("s3", config=CLIENT_CONFIG),
            sqs=s.client("sqs", config=CLIENT_CONFIG),
            streams=s.client("dynamodbstreams", config=CLIENT_CONFIG),
            cloudwatch=s.client("cloudwatch", config=CLIENT_CONFIG),
        )


def owner_id() -> str:
    """Names a lease holder in a way an operator can trace to a process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_reader(settings: Settings, clients: Clients) -> Reader:
    """A reader whose cache sits beside (never inside) the compactor's working copy."""
    return Reader(
        PointerTable(clients.dynamodb, settings.control_table_name),
        SnapshotStore(clients.s3, settings.snapshot_bucket, settings.snapshot_prefix),
        Path(settings.cache_dir) / "reader",
        LayoutTable(clients.dynamodb, settings.control_table_name),
    )


def build_compactor(
    settings: Settings,
    clients: Clients,
    hooks: Hooks | None = None,
    clock: Callable[[], float] = time.time,
) -> Compactor:
    return Compactor(
        settings=settings,
        leases=LeaseTable(clients.dynamodb, settings.control_table_name, clock),
        pointers=PointerTable(clients.dynamodb, settings.control_table_name, clock),
        store=SnapshotStore(clients.s3, settings.snapshot_bucket, settings.snapshot_prefix),
        sqs=clients.sqs,
        s3=clients.s3,
        layouts=LayoutTable(clients.dynamodb, settings.control_table_name),
        health=HealthTable(clients.dynamodb, settings.control_table_name, clock),
        owner=owner_id(),
        clock=clock,
        hooks=hooks or Hooks(),
    )
