"""`CompactorPipeline`: one chroma-compactor pipeline as a Pulumi component.

Names and limits come from the project's own modules (`chroma_compactor.settings`,
`chroma_compactor.resources`), and each function's environment is `Settings(...).to_env()`, so what
is deployed and what the handlers read are the same model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from chroma_compactor.delta import DELTA_EXPIRY_DAYS, DELTA_PREFIX
from chroma_compactor.errors import ConfigurationError
from chroma_compactor.resources import (
    COMPACTOR_TIMEOUT_S,
    DLQ_RETENTION_S,
    MAIN_RETENTION_S,
    MAX_RECEIVE_COUNT,
    VISIBILITY_TIMEOUT_S,
    PipelineNames,
)
from chroma_compactor.settings import (
    COLLECTION_SHARDS,
    COMPACTION_BATCH_SIZE,
    COMPACTION_BATCHING_WINDOW_SECONDS,
    CONTROL_TABLE_NAME,
    FETCH_SECONDS,
    HNSW_SPACE,
    LEASE_SECONDS,
    LEASE_WAIT_SECONDS,
    MAX_MESSAGES_PER_CYCLE,
    QUEUE_TYPE,
    RETAIN_VERSIONS,
    SNAPSHOT_BUCKET,
    SNAPSHOT_PREFIX,
    STREAM_BATCH_SIZE,
    TOMBSTONE_HORIZON_DAYS,
    QueueType,
    Settings,
)
from infra import dashboard, iam

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

RUNTIME = "python3.12"  # python3.11 runs on Amazon Linux 2, whose SQLite is too old for chromadb
FORWARDER_HANDLER = "stream_forwarder.handler"
COMPACTOR_HANDLER = "enhanced_compaction_handler.handler"
QUERY_HANDLER = "query_handler.handler"
QUERY_TIMEOUT_S = 30
FORWARDER_TIMEOUT_S = 60
STREAM_FAILURE_RETENTION_S = DLQ_RETENTION_S

# Stack config key -> the settings variable it sets. Everything else in Settings keeps its default
# or is filled in from the resources this component creates.
CONFIG_KEYS: dict[str, str] = {
    "queueType": QUEUE_TYPE,
    "compactionBatchSize": COMPACTION_BATCH_SIZE,
    "compactionBatchingWindowSeconds": COMPACTION_BATCHING_WINDOW_SECONDS,
    "streamBatchSize": STREAM_BATCH_SIZE,
    "snapshotPrefix": SNAPSHOT_PREFIX,
    "maxMessagesPerCycle": MAX_MESSAGES_PER_CYCLE,
    "fetchSeconds": FETCH_SECONDS,
    "leaseSeconds": LEASE_SECONDS,
    "leaseWaitSeconds": LEASE_WAIT_SECONDS,
    "retainVersions": RETAIN_VERSIONS,
    "tombstoneHorizonDays": TOMBSTONE_HORIZON_DAYS,
    "hnswSpace": HNSW_SPACE,
    "collectionShards": COLLECTION_SHARDS,
}

# Required by Settings but only known once the resources exist; replaced before any use.
_PENDING = "pending"

if VISIBILITY_TIMEOUT_S <= COMPACTOR_TIMEOUT_S:  # pragma: no cover - a guard on shared constants
    raise ConfigurationError("the queue's visibility timeout must exceed the compactor's timeout")


class InvalidStackConfig(ValueError):
    """The stack config cannot describe a deployable pipeline; nothing was declared."""


def settings_from_config(values: Mapping[str, str | None], project: str = "") -> Settings:
    """Validate the stack config through the one settings model, before any resource exists.

    The model's own validators refuse what Lambda would refuse at deploy time (a batching window
    on a FIFO queue, a FIFO batch above 10); the message names the stack config keys to change.
    """
    env = {CONTROL_TABLE_NAME: _PENDING, SNAPSHOT_BUCKET: _PENDING}
    env |= {CONFIG_KEYS[k]: str(v) for k, v in values.items() if k in CONFIG_KEYS and v is not None}
    unknown = sorted(k for k, v in values.items() if k not in CONFIG_KEYS and v is not None)
    if unknown:
        raise InvalidStackConfig(f"unknown settings keys: {', '.join(unknown)}")
    try:
        return Settings.from_env(env)
    except ConfigurationError as e:
        message = str(e)
        for key, var in CONFIG_KEYS.items():
            qualified = f"{project}:{key}" if project else key
            message = re.sub(rf"\b{var}\b", f"{qualified} ({var})", message)
        raise InvalidStackConfig(f"stack config refused: {message}") from e


@dataclass
class PipelineArgs:
    """What a pipeline is made of. `settings` is validated; names are filled in here."""

    settings: Settings
    names: PipelineNames
    code_dir: str
    layer_zip: str
    forwarder_name: str
    compactor_name: str
    existing_source_table: str | None = None
    compactor_memory_mb: int = 2048
    compactor_ephemeral_storage_mb: int = 2048
    forwarder_memory_mb: int = 256
    query_name: str = "chroma-compactor-query"
    query_memory_mb: int = 1024
    query_ephemeral_storage_mb: int = 2048
    stream_maximum_retry_attempts: int = 3
    stream_starting_position: str = "TRIM_HORIZON"
    oldest_message_alarm_s: int = 900
    log_retention_days: int = 30
    alarm_topic_arn: pulumi.Input[str] | None = None
    protect_source_table: bool = True


def code_archive(code_dir: str) -> pulumi.AssetArchive:
    """The handlers and the `chroma_compactor` package, without caches or build metadata."""
    root = Path(code_dir)
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(
            p == "__pycache__" or p.endswith(".egg-info") for p in rel.parts
        ):
            continue
        if path.suffix == ".py" or path.name == "py.typed":
            assets[rel.as_posix()] = pulumi.FileAsset(str(path))
    if not assets:
        raise InvalidStackConfig(f"no Lambda code under {code_dir}")
    return pulumi.AssetArchive(assets)


def compactor_concurrency(settings: Settings) -> int:
    """One compactor per shard group (see Settings.compactor_concurrency)."""
    return settings.compactor_concurrency


class CompactorPipeline(pulumi.ComponentResource):
    """Source table → stream forwarder → queue (+DLQ) → single-writer compactor → S3 snapshots."""

    def __init__(
        self, name: str, args: PipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("chroma-compactor:index:Pipeline", name, None, opts)
        self._name = name
        self._args = args
        settings = args.settings
        names = args.names
        fifo = settings.queue_type is QueueType.FIFO
        child = ResourceOptions(parent=self)

        # --- tables -------------------------------------------------------------------------
        if args.existing_source_table:
            found = aws.dynamodb.get_table_output(
                name=args.existing_source_table, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            self.source_table_name: Output[str] = found.name
            self.source_stream_arn: Output[str] = Output.all(
                found.name, found.stream_arn, found.stream_enabled, found.stream_view_type
            ).apply(lambda a: _checked_stream(str(a[0]), a[1], a[2], a[3]))
        else:
            source = aws.dynamodb.Table(
                f"{name}-source",
                name=names.source_table,
                billing_mode="PAY_PER_REQUEST",
                hash_key="collection",
                range_key="id",
                attributes=[
                    aws.dynamodb.TableAttributeArgs(name="collection", type="S"),
                    aws.dynamodb.TableAttributeArgs(name="id", type="S"),
                ],
                stream_enabled=True,
                stream_view_type="NEW_AND_OLD_IMAGES",
                # The Writer's delete stubs carry `ttl`: DynamoDB removes them after 21 days.
                ttl=aws.dynamodb.TableTtlArgs(attribute_name="ttl", enabled=True),
                point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
                server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
                deletion_protection_enabled=args.protect_source_table,
                opts=child,
            )
            self.source_table = source
            self.source_table_name = source.name
            self.source_stream_arn = source.stream_arn

        self.control_table = aws.dynamodb.Table(
            f"{name}-control",
            name=names.control_table,
            billing_mode="PAY_PER_REQUEST",
            hash_key="pk",
            attributes=[aws.dynamodb.TableAttributeArgs(name="pk", type="S")],
            # Expired leases and checkpoints carry `ttl`; DynamoDB removes them eventually.
            ttl=aws.dynamodb.TableTtlArgs(attribute_name="ttl", enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            opts=child,
        )

        # --- queues -------------------------------------------------------------------------
        fifo_args: dict[str, Any] = (
            {"fifo_queue": True, "content_based_deduplication": False}
            if fifo
            else {"fifo_queue": False}
        )
        self.dlq = aws.sqs.Queue(
            f"{name}-dlq",
            name=names.dlq,
            message_retention_seconds=DLQ_RETENTION_S,
            sqs_managed_sse_enabled=True,
            **fifo_args,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            name=names.queue,
            message_retention_seconds=MAIN_RETENTION_S,
            visibility_timeout_seconds=VISIBILITY_TIMEOUT_S,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dlq.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
                )
            ),
            **fifo_args,
            opts=child,
        )
        # The stream mapping's on-failure records describe a failed batch (shard, sequence
        # numbers), not compaction messages: they get their own standard queue (Lambda cannot
        # send them to a FIFO queue) so `redrive` never feeds them to the compactor.
        self.stream_failures = aws.sqs.Queue(
            f"{name}-stream-failures",
            name=f"{names.queue.removesuffix('.fifo')}-stream-failures",
            message_retention_seconds=STREAM_FAILURE_RETENTION_S,
            sqs_managed_sse_enabled=True,
            opts=child,
        )

        # --- snapshot bucket ----------------------------------------------------------------
        self.bucket = aws.s3.Bucket(f"{name}-snapshots", opts=child)
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-snapshots-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.bucket_encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-snapshots-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        self.bucket_ownership = aws.s3.BucketOwnershipControls(
            f"{name}-snapshots-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        self.bucket_lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-snapshots-lifecycle",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-multipart-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=1
                    ),
                ),
                # Bulk loads' deltas: applied once, kept past the DLQ's retention for a redrive.
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-bulk-load-deltas",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(
                        prefix=f"{DELTA_PREFIX}/"
                    ),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=DELTA_EXPIRY_DAYS
                    ),
                ),
            ],
            opts=child,
        )
        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-snapshots-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(lambda arn: json.dumps(iam.tls_only_bucket_policy(arn))),
            opts=ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )

        # --- one settings model, one environment ---------------------------------------------
        self.settings_env: Output[dict[str, str]] = Output.all(
            self.source_table_name, self.control_table.name, self.bucket.bucket, self.queue.url
        ).apply(
            lambda a: self.deployed_settings(str(a[0]), str(a[1]), str(a[2]), str(a[3])).to_env()
        )

        self.layer = aws.lambda_.LayerVersion(
            f"{name}-chromadb-layer",
            layer_name=f"{names.queue.removesuffix('.fifo')}-chromadb",
            code=pulumi.FileArchive(args.layer_zip),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=["x86_64"],
            opts=child,
        )
        code = code_archive(args.code_dir)

        # --- forwarder ----------------------------------------------------------------------
        fwd_logs = self._log_group("forwarder", args.forwarder_name)
        self.forwarder_role, self.forwarder_policy = self._role(
            "forwarder",
            Output.all(
                self.source_stream_arn, self.queue.arn, self.stream_failures.arn, fwd_logs.arn
            ).apply(
                lambda a: json.dumps(
                    iam.forwarder_policy(
                        stream_arn=a[0], queue_arn=a[1], failure_queue_arn=a[2], log_group_arn=a[3]
                    )
                )
            ),
        )
        self.forwarder = self._function(
            "forwarder",
            function_name=args.forwarder_name,
            handler=FORWARDER_HANDLER,
            role=self.forwarder_role,
            policy=self.forwarder_policy,
            log_group=fwd_logs,
            code=code,
            memory_mb=args.forwarder_memory_mb,
            timeout_s=FORWARDER_TIMEOUT_S,
        )
        self.stream_mapping = aws.lambda_.EventSourceMapping(
            f"{name}-stream-mapping",
            event_source_arn=self.source_stream_arn,
            function_name=self.forwarder.arn,
            starting_position=args.stream_starting_position,
            batch_size=settings.stream_batch_size,
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=args.stream_maximum_retry_attempts,
            destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
                on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(
                    destination_arn=self.stream_failures.arn
                )
            ),
            function_response_types=["ReportBatchItemFailures"],
            opts=ResourceOptions(parent=self, depends_on=[self.forwarder_policy]),
        )

        # --- compactor ----------------------------------------------------------------------
        cmp_logs = self._log_group("compactor", args.compactor_name)
        self.compactor_role, self.compactor_policy = self._role(
            "compactor",
            Output.all(
                self.control_table.arn, self.bucket.arn, self.queue.arn, self.dlq.arn, cmp_logs.arn
            ).apply(
                lambda a: json.dumps(
                    iam.compactor_policy(
                        control_table_arn=a[0],
                        bucket_arn=a[1],
                        snapshot_prefix=settings.snapshot_prefix,
                        queue_arn=a[2],
                        dlq_arn=a[3],
                        log_group_arn=a[4],
                    )
                )
            ),
        )
        self.compactor = self._function(
            "compactor",
            function_name=args.compactor_name,
            handler=COMPACTOR_HANDLER,
            role=self.compactor_role,
            policy=self.compactor_policy,
            log_group=cmp_logs,
            code=code,
            memory_mb=args.compactor_memory_mb,
            timeout_s=COMPACTOR_TIMEOUT_S,
            ephemeral_storage_mb=args.compactor_ephemeral_storage_mb,
            # One writer per shard: the leases make more harmless, this makes it not happen.
            reserved_concurrency=compactor_concurrency(settings),
        )
        self.queue_mapping = aws.lambda_.EventSourceMapping(
            f"{name}-queue-mapping",
            event_source_arn=self.queue.arn,
            function_name=self.compactor.arn,
            batch_size=settings.batch_size,
            # Lambda rejects a batching window on FIFO sources; Settings refused one already.
            maximum_batching_window_in_seconds=None if fifo else settings.batching_window,
            function_response_types=["ReportBatchItemFailures"],
            opts=ResourceOptions(parent=self, depends_on=[self.compactor_policy]),
        )

        # --- query ---------------------------------------------------------------------------
        qry_logs = self._log_group("query", args.query_name)
        self.query_role, self.query_policy = self._role(
            "query",
            Output.all(self.control_table.arn, self.bucket.arn, qry_logs.arn).apply(
                lambda a: json.dumps(
                    iam.query_policy(
                        control_table_arn=a[0],
                        bucket_arn=a[1],
                        snapshot_prefix=settings.snapshot_prefix,
                        log_group_arn=a[2],
                    )
                )
            ),
        )
        self.query = self._function(
            "query",
            function_name=args.query_name,
            handler=QUERY_HANDLER,
            role=self.query_role,
            policy=self.query_policy,
            log_group=qry_logs,
            code=code,
            memory_mb=args.query_memory_mb,
            timeout_s=QUERY_TIMEOUT_S,
            ephemeral_storage_mb=args.query_ephemeral_storage_mb,
        )
        # Callers sign their requests (SigV4) and need lambda:InvokeFunctionUrl on it.
        self.query_url = aws.lambda_.FunctionUrl(
            f"{name}-query-url",
            function_name=self.query.name,
            authorization_type="AWS_IAM",
            opts=child,
        )

        # --- alarms and dashboard -----------------------------------------------------------
        self.alarms = [
            self._alarm(
                "dlq-depth",
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": self.dlq.name},
                "Maximum",
                0,
                "compaction messages reached the DLQ: inspect, fix, then `chroma-compactor redrive`",
            ),
            self._alarm(
                "stream-failures-depth",
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": self.stream_failures.name},
                "Maximum",
                0,
                "stream batches the forwarder could not deliver: the snapshot misses those writes",
            ),
            self._alarm(
                "oldest-message-age",
                "AWS/SQS",
                "ApproximateAgeOfOldestMessage",
                {"QueueName": self.queue.name},
                "Maximum",
                args.oldest_message_alarm_s,
                "the compactor is not keeping up with the queue",
            ),
            self._alarm(
                "compactor-errors",
                "AWS/Lambda",
                "Errors",
                {"FunctionName": self.compactor.name},
                "Sum",
                0,
                "the compaction function failed",
            ),
            self._alarm(
                "compactor-throttles",
                "AWS/Lambda",
                "Throttles",
                {"FunctionName": self.compactor.name},
                "Sum",
                0,
                "compaction invocations were throttled (concurrency is one per shard by design)",
            ),
            self._alarm(
                "forwarder-errors",
                "AWS/Lambda",
                "Errors",
                {"FunctionName": self.forwarder.name},
                "Sum",
                0,
                "the stream forwarder failed",
            ),
        ]
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=names.queue.removesuffix(".fifo").removesuffix("-compaction"),
            dashboard_body=Output.all(
                region, self.queue.name, self.dlq.name, self.compactor.name, self.forwarder.name
            ).apply(
                lambda a: dashboard.dashboard_body(
                    region=a[0],
                    queue_name=a[1],
                    dlq_name=a[2],
                    compactor_name=a[3],
                    forwarder_name=a[4],
                )
            ),
            opts=child,
        )

        self.register_outputs(
            {
                "source_table_name": self.source_table_name,
                "control_table_name": self.control_table.name,
                "snapshot_bucket": self.bucket.bucket,
                "queue_url": self.queue.url,
                "dlq_url": self.dlq.url,
                "stream_failure_queue_url": self.stream_failures.url,
                "forwarder_name": self.forwarder.name,
                "compactor_name": self.compactor.name,
                "dashboard_name": self.dashboard.dashboard_name,
                "query_name": self.query.name,
                "query_url": self.query_url.function_url,
            }
        )

    def deployed_settings(
        self, source_table: str, control_table: str, bucket: str, queue_url: str
    ) -> Settings:
        """The validated config with the names of the deployed resources filled in."""
        return Settings.model_validate(
            self._args.settings.model_dump()
            | {
                "source_table_name": source_table,
                "control_table_name": control_table,
                "snapshot_bucket": bucket,
                "compaction_queue_url": queue_url,
            }
        )

    # --- private wiring ---------------------------------------------------------------------
    def _log_group(self, role: str, function_name: str) -> aws.cloudwatch.LogGroup:
        # Created here, before the function, so the role needs no logs:CreateLogGroup.
        return aws.cloudwatch.LogGroup(
            f"{self._name}-{role}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=self._args.log_retention_days,
            opts=ResourceOptions(parent=self),
        )

    def _role(self, role: str, policy: Output[str]) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        r = aws.iam.Role(
            f"{self._name}-{role}-role",
            assume_role_policy=json.dumps(iam.lambda_assume_role_policy()),
            opts=ResourceOptions(parent=self),
        )
        p = aws.iam.RolePolicy(
            f"{self._name}-{role}-policy",
            role=r.id,
            policy=policy,
            opts=ResourceOptions(parent=self),
        )
        return r, p

    def _function(
        self,
        role_name: str,
        *,
        function_name: str,
        handler: str,
        role: aws.iam.Role,
        policy: aws.iam.RolePolicy,
        log_group: aws.cloudwatch.LogGroup,
        code: pulumi.AssetArchive,
        memory_mb: int,
        timeout_s: int,
        ephemeral_storage_mb: int | None = None,
        reserved_concurrency: int | None = None,
    ) -> aws.lambda_.Function:
        return aws.lambda_.Function(
            f"{self._name}-{role_name}",
            name=function_name,
            runtime=RUNTIME,
            architectures=["x86_64"],
            handler=handler,
            role=role.arn,
            code=code,
            layers=[self.layer.arn],
            memory_size=memory_mb,
            timeout=timeout_s,
            ephemeral_storage=(
                aws.lambda_.FunctionEphemeralStorageArgs(size=ephemeral_storage_mb)
                if ephemeral_storage_mb
                else None
            ),
            reserved_concurrent_executions=reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=self.settings_env),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=log_group.name
            ),
            opts=ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )

    def _alarm(
        self,
        suffix: str,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, pulumi.Input[str]],
        statistic: str,
        threshold: float,
        description: str,
    ) -> aws.cloudwatch.MetricAlarm:
        actions: Sequence[pulumi.Input[str]] = (
            [self._args.alarm_topic_arn] if self._args.alarm_topic_arn else []
        )
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{suffix}",
            namespace=namespace,
            metric_name=metric,
            dimensions=dict(dimensions),
            statistic=statistic,
            period=300 if metric in {"Errors", "Throttles"} else 60,
            evaluation_periods=1,
            threshold=threshold,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_description=description,
            alarm_actions=list(actions),
            ok_actions=list(actions),
            opts=ResourceOptions(parent=self),
        )


def _checked_stream(table: str, stream_arn: Any, enabled: Any, view: Any) -> str:
    if not enabled or not stream_arn:
        raise InvalidStackConfig(f"source table {table} has no stream: enable NEW_AND_OLD_IMAGES")
    if view != "NEW_AND_OLD_IMAGES":
        raise InvalidStackConfig(
            f"source table {table} streams {view}; the forwarder needs NEW_AND_OLD_IMAGES"
        )
    return str(stream_arn)
