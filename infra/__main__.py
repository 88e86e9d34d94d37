"""The Pulumi program: stack config in, one `CompactorPipeline`, stack outputs out.

This is the only module that reads `pulumi.Config()`. Stack outputs use the environment variable
names of `chroma_compactor.settings`, so `pulumi stack output --json` can feed the CLI directly.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this directory as a script; make the project root (for `infra`) importable.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import pulumi  # noqa: E402

from chroma_compactor.resources import PipelineNames  # noqa: E402
from chroma_compactor.settings import (  # noqa: E402
    COMPACTION_QUEUE_URL,
    CONTROL_TABLE_NAME,
    QUEUE_TYPE,
    SNAPSHOT_BUCKET,
    SNAPSHOT_PREFIX,
    SOURCE_TABLE_NAME,
)
from infra.pipeline import (  # noqa: E402
    CONFIG_KEYS,
    CompactorPipeline,
    InvalidStackConfig,
    PipelineArgs,
    settings_from_config,
)

config = pulumi.Config()
project = pulumi.get_project()
stack = pulumi.get_stack()

# Validated first: a refused combination (e.g. FIFO + batching window) stops the program here,
# before any resource is declared.
settings = settings_from_config({key: config.get(key) for key in CONFIG_KEYS}, project)

layer_zip = _ROOT / (config.get("layerZip") or "build/chromadb-layer.zip")
if not layer_zip.is_file():
    raise InvalidStackConfig(
        f"{project}:layerZip: {layer_zip} does not exist; build it with `make layer`"
    )

prefix = config.get("namePrefix") or f"{project}-{stack}"
names = PipelineNames.for_prefix(prefix, settings.queue_type)

pipeline = CompactorPipeline(
    "pipeline",
    PipelineArgs(
        settings=settings,
        names=names,
        code_dir=str(_ROOT / "lambdas"),
        layer_zip=str(layer_zip),
        forwarder_name=f"{prefix}-forwarder",
        compactor_name=f"{prefix}-compactor",
        query_name=f"{prefix}-query",
        query_memory_mb=config.get_int("queryMemoryMb") or 1024,
        existing_source_table=config.get("existingSourceTable"),
        compactor_memory_mb=config.get_int("compactorMemoryMb") or 2048,
        compactor_ephemeral_storage_mb=config.get_int("compactorEphemeralStorageMb") or 2048,
        forwarder_memory_mb=config.get_int("forwarderMemoryMb") or 256,
        stream_maximum_retry_attempts=config.get_int("streamMaximumRetryAttempts") or 3,
        oldest_message_alarm_s=config.get_int("oldestMessageAlarmSeconds") or 900,
        log_retention_days=config.get_int("logRetentionDays") or 30,
        alarm_topic_arn=config.get("alarmTopicArn"),
        protect_source_table=config.get_bool("protectSourceTable") is not False,
    ),
)

pulumi.export(SOURCE_TABLE_NAME, pipeline.source_table_name)
pulumi.export(CONTROL_TABLE_NAME, pipeline.control_table.name)
pulumi.export(SNAPSHOT_BUCKET, pipeline.bucket.bucket)
pulumi.export(SNAPSHOT_PREFIX, settings.snapshot_prefix)
pulumi.export(COMPACTION_QUEUE_URL, pipeline.queue.url)
pulumi.export(QUEUE_TYPE, settings.queue_type.value)
pulumi.export("COMPACTION_DLQ_URL", pipeline.dlq.url)
pulumi.export("STREAM_FAILURE_QUEUE_URL", pipeline.stream_failures.url)
pulumi.export("FORWARDER_FUNCTION_NAME", pipeline.forwarder.name)
pulumi.export("COMPACTOR_FUNCTION_NAME", pipeline.compactor.name)
pulumi.export("DASHBOARD_NAME", pipeline.dashboard.dashboard_name)
pulumi.export("QUERY_FUNCTION_NAME", pipeline.query.name)
pulumi.export("QUERY_URL", pipeline.query_url.function_url)
