"""Shared fixtures: fake AWS credentials, moto-backed clients, a whole pipeline, a fake clock."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from moto import mock_aws

from chroma_compactor import moto_patches
from chroma_compactor.lease import LeaseTable
from chroma_compactor.resources import PipelineNames, create_pipeline
from chroma_compactor.settings import QueueType, Settings
from chroma_compactor.wiring import Clients
from faults import FlakyAws, InFlight
from support import FakeClock, Pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from chroma_compactor.cycle import Compactor
    from chroma_compactor.reader import Reader

_names = itertools.count()
# The compactor receives and deletes from several threads; in-process moto's SQS is not
# thread-safe, so its calls take turns (moto_patches.serialize_sqs; local mode patches more).
moto_patches.serialize_sqs()


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach AWS: fake keys, a fixed region, no endpoint from the developer's shell."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # moto 5.2.5 answers DynamoDB Streams in-process only with account-id endpoints disabled.
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ChromaCompactorTest")


@pytest.fixture
def clients() -> Iterator[Clients]:
    with mock_aws():
        yield Clients.create()


@pytest.fixture
def no_retry_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries injected faults at once instead of sleeping its backoff between them."""
    import botocore.endpoint

    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=lambda _s: None))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=[QueueType.STANDARD])
def queue_type(request: pytest.FixtureRequest) -> QueueType:
    return QueueType(request.param)


@pytest.fixture
def pipeline(clients: Clients, tmp_path: Path, clock: FakeClock, queue_type: QueueType) -> Pipeline:
    names = PipelineNames.for_prefix(f"t{next(_names)}", queue_type)
    created = create_pipeline(clients, names, queue_type)
    settings = Settings(
        source_table_name=names.source_table,
        control_table_name=names.control_table,
        snapshot_bucket=names.bucket,
        compaction_queue_url=created.queue_url,
        queue_type=queue_type,
        cache_dir=str(tmp_path / "cache-a"),
        lease_seconds=30,
        lease_wait_seconds=0,
        fetch_seconds=1,
        chunk_bytes=64 * 1024,
    )
    return Pipeline(
        clients=clients, names=names, created=created, settings=settings, clock=clock, tmp=tmp_path
    )


@pytest.fixture
def in_flight(pipeline: Pipeline) -> InFlight:
    """Ends the invisibility of received messages, standing in for a visibility timeout."""
    return InFlight(pipeline.clients.sqs, pipeline.created.queue_url)


@pytest.fixture
def flaky_aws(pipeline: Pipeline, no_retry_backoff: None) -> FlakyAws:
    """S3 and DynamoDB requests of the pipeline's clients fail at a rate the test sets."""
    flaky = FlakyAws()
    flaky.attach(pipeline.clients.s3, pipeline.clients.dynamodb)
    return flaky


@pytest.fixture
def compactor(pipeline: Pipeline) -> Compactor:
    return pipeline.compactor("a")


@pytest.fixture
def leases(pipeline: Pipeline) -> LeaseTable:
    return LeaseTable(pipeline.clients.dynamodb, pipeline.names.control_table, pipeline.clock)


@pytest.fixture
def cli_env(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The environment a Lambda of this pipeline would get, for the CLI to read."""
    for name, value in pipeline.settings.to_env().items():
        monkeypatch.setenv(name, value)
    return pipeline


@pytest.fixture
def reader(pipeline: Pipeline) -> Reader:
    return pipeline.reader()
