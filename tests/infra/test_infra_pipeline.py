"""The resources a pipeline declares: queues, mappings, functions, tables, bucket, alarms."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pulumi
import pytest
from infra.pipeline import InvalidStackConfig, settings_from_config
from infra_mocks import ACCOUNT, MOCKS, REGION, STREAM_LABEL
from infra_support import build, settled
from pulumi import Output

from chroma_compactor.resources import (
    COMPACTOR_TIMEOUT_S,
    DLQ_RETENTION_S,
    MAIN_RETENTION_S,
    MAX_RECEIVE_COUNT,
)
from chroma_compactor.settings import COMPACTION_BATCHING_WINDOW_SECONDS, Settings

if TYPE_CHECKING:
    from infra.pipeline import CompactorPipeline

SQS_QUEUE = "aws:sqs/queue:Queue"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"


def inputs(p: CompactorPipeline, suffix: str) -> dict[str, Any]:
    _typ, declared = MOCKS.resources[f"{p._name}-{suffix}"]
    return declared


def checked(p: CompactorPipeline, check: Any) -> Output[Any]:
    return settled(p).apply(lambda _: check())


@pulumi.runtime.test
def test_compactor_is_a_single_writer_on_python312() -> Output[Any]:
    p = build()

    def check() -> None:
        fn = inputs(p, "compactor")
        assert fn["reservedConcurrentExecutions"] == 1
        assert fn["runtime"] == "python3.12"
        assert fn["handler"] == "enhanced_compaction_handler.handler"
        assert fn["timeout"] == COMPACTOR_TIMEOUT_S == 900
        assert fn["memorySize"] == 2048
        assert fn["ephemeralStorage"] == {"size": 2048}
        layer = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:cc-{p._name}-compaction-chromadb:1"
        assert fn["layers"] == [layer]
        fwd = inputs(p, "forwarder")
        assert fwd["handler"] == "stream_forwarder.handler"
        assert "reservedConcurrentExecutions" not in fwd

    return checked(p, check)


@pulumi.runtime.test
def test_memory_and_storage_come_from_args() -> Output[Any]:
    p = build(compactor_memory_mb=3008, compactor_ephemeral_storage_mb=4096)

    def check() -> None:
        fn = inputs(p, "compactor")
        assert (fn["memorySize"], fn["ephemeralStorage"]) == (3008, {"size": 4096})

    return checked(p, check)


@pulumi.runtime.test
def test_standard_queue_is_the_default() -> Output[Any]:
    p = build()

    def check() -> None:
        for suffix in ("queue", "dlq"):
            q = inputs(p, suffix)
            assert q["fifoQueue"] is False
            assert not q["name"].endswith(".fifo")
            assert "contentBasedDeduplication" not in q

    return checked(p, check)


@pulumi.runtime.test
def test_queue_type_fifo_gives_fifo_queue_and_dlq() -> Output[Any]:
    p = build({"queueType": "fifo"})

    def check() -> None:
        for suffix in ("queue", "dlq"):
            q = inputs(p, suffix)
            assert q["fifoQueue"] is True
            assert q["name"].endswith(".fifo")
            # Dedup ids are the stream records' eventIDs, set by the forwarder.
            assert q["contentBasedDeduplication"] is False
        # Lambda cannot send on-failure records to a FIFO queue.
        failures = inputs(p, "stream-failures")
        assert "fifoQueue" not in failures
        assert not failures["name"].endswith(".fifo")

    return checked(p, check)


@pulumi.runtime.test
def test_dlq_wiring_retention_visibility_and_sse() -> Output[Any]:
    p = build()

    def check(dlq_arn: str) -> None:
        main, dlq = inputs(p, "queue"), inputs(p, "dlq")
        assert json.loads(main["redrivePolicy"]) == {
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": MAX_RECEIVE_COUNT,
        }
        assert MAX_RECEIVE_COUNT == 3
        assert main["messageRetentionSeconds"] == MAIN_RETENTION_S == 4 * 86_400
        assert dlq["messageRetentionSeconds"] == DLQ_RETENTION_S == 14 * 86_400
        assert main["visibilityTimeoutSeconds"] > COMPACTOR_TIMEOUT_S
        assert "redrivePolicy" not in dlq
        for suffix in ("queue", "dlq", "stream-failures"):
            assert inputs(p, suffix)["sqsManagedSseEnabled"] is True

    return Output.all(settled(p), p.dlq.arn).apply(lambda a: check(a[1]))


@pulumi.runtime.test
def test_standard_queue_mapping_batches_by_size_and_window() -> Output[Any]:
    p = build({"compactionBatchSize": "500", "compactionBatchingWindowSeconds": "30"})

    def check(queue_arn: str, fn_arn: str) -> None:
        m = inputs(p, "queue-mapping")
        assert m["eventSourceArn"] == queue_arn
        assert m["functionName"] == fn_arn
        assert m["batchSize"] == 500
        assert m["maximumBatchingWindowInSeconds"] == 30
        assert m["functionResponseTypes"] == ["ReportBatchItemFailures"]

    return Output.all(settled(p), p.queue.arn, p.compactor.arn).apply(lambda a: check(a[1], a[2]))


@pulumi.runtime.test
def test_default_mappings_follow_settings_defaults() -> Output[Any]:
    standard, fifo = build(), build({"queueType": "fifo"})

    def check() -> None:
        s = inputs(standard, "queue-mapping")
        assert (s["batchSize"], s["maximumBatchingWindowInSeconds"]) == (100, 5)
        f = inputs(fifo, "queue-mapping")
        assert f["batchSize"] == 10
        assert "maximumBatchingWindowInSeconds" not in f
        assert f["functionResponseTypes"] == ["ReportBatchItemFailures"]

    return Output.all(settled(standard), settled(fifo)).apply(lambda _: check())


@pulumi.runtime.test
def test_stream_mapping_bisects_retries_and_sends_failures_aside() -> Output[Any]:
    p = build({"streamBatchSize": "250"}, stream_maximum_retry_attempts=5)

    def check(stream_arn: str, failures_arn: str, fn_arn: str) -> None:
        m = inputs(p, "stream-mapping")
        assert m["eventSourceArn"] == stream_arn
        assert stream_arn.endswith(f"/stream/{STREAM_LABEL}")
        assert m["functionName"] == fn_arn
        assert m["batchSize"] == 250
        assert m["bisectBatchOnFunctionError"] is True
        assert m["maximumRetryAttempts"] == 5
        assert m["startingPosition"] == "TRIM_HORIZON"
        assert m["destinationConfig"] == {"onFailure": {"destinationArn": failures_arn}}
        assert m["functionResponseTypes"] == ["ReportBatchItemFailures"]

    return Output.all(
        settled(p), p.source_stream_arn, p.stream_failures.arn, p.forwarder.arn
    ).apply(lambda a: check(a[1], a[2], a[3]))


def test_fifo_with_batching_window_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidStackConfig) as e:
        settings_from_config(
            {"queueType": "fifo", "compactionBatchingWindowSeconds": "30"}, "chroma-compactor"
        )
    message = str(e.value)
    assert "chroma-compactor:compactionBatchingWindowSeconds" in message
    assert COMPACTION_BATCHING_WINDOW_SECONDS in message
    assert "FIFO" in message
    assert "Lambda rejects a batching window" in message


def test_fifo_batch_above_ten_is_refused() -> None:
    with pytest.raises(InvalidStackConfig, match=r"compactionBatchSize .* at most 10"):
        settings_from_config({"queueType": "fifo", "compactionBatchSize": "50"})


def test_unknown_queue_type_is_refused() -> None:
    with pytest.raises(InvalidStackConfig, match="queueType"):
        settings_from_config({"queueType": "kinesis"})


@pulumi.runtime.test
def test_lambda_environment_is_the_settings_model() -> Output[Any]:
    p = build({"queueType": "fifo", "snapshotPrefix": "snaps", "leaseSeconds": "90"})

    def check(source: str, control: str, bucket: str, url: str) -> None:
        expected = p.deployed_settings(source, control, bucket, url).to_env()
        for role in ("forwarder", "compactor"):
            env = inputs(p, role)["environment"]["variables"]
            assert env == expected
            # What the handlers do at cold start: Settings.from_env reads it back, unchanged.
            loaded = Settings.from_env(env)
            assert loaded.to_env() == env
            assert loaded.control_table_name == control
            assert loaded.snapshot_bucket == bucket
            assert loaded.source_table_name == source
            assert loaded.queue_url_for("any") == url
            assert loaded.queue_type == "fifo"
            assert loaded.snapshot_prefix == "snaps"
            assert loaded.lease_seconds == 90

    return Output.all(
        settled(p), p.source_table_name, p.control_table.name, p.bucket.bucket, p.queue.url
    ).apply(lambda a: check(a[1], a[2], a[3], a[4]))


@pulumi.runtime.test
def test_tables() -> Output[Any]:
    p = build()

    def check() -> None:
        src = inputs(p, "source")
        assert src["billingMode"] == "PAY_PER_REQUEST"
        assert (src["hashKey"], src["rangeKey"]) == ("collection", "id")
        assert src["streamEnabled"] is True
        assert src["streamViewType"] == "NEW_AND_OLD_IMAGES"
        assert src["pointInTimeRecovery"] == {"enabled": True}
        assert src["serverSideEncryption"] == {"enabled": True}
        assert src["ttl"] == {"attributeName": "ttl", "enabled": True}  # delete stubs expire
        ctl = inputs(p, "control")
        assert ctl["hashKey"] == "pk"
        assert ctl["attributes"] == [{"name": "pk", "type": "S"}]
        assert ctl["ttl"] == {"attributeName": "ttl", "enabled": True}
        assert ctl["billingMode"] == "PAY_PER_REQUEST"

    return checked(p, check)


@pulumi.runtime.test
def test_existing_source_table_is_looked_up_not_created() -> Output[Any]:
    p = build(existing_source_table="legacy-vectors")

    def check(stream_arn: str, name: str) -> None:
        assert f"{p._name}-source" not in MOCKS.resources
        assert name == "legacy-vectors"
        assert stream_arn == (
            f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/legacy-vectors/stream/{STREAM_LABEL}"
        )
        assert inputs(p, "stream-mapping")["eventSourceArn"] == stream_arn
        env = inputs(p, "compactor")["environment"]["variables"]
        assert env["SOURCE_TABLE_NAME"] == "legacy-vectors"

    return Output.all(settled(p), p.source_stream_arn, p.source_table_name).apply(
        lambda a: check(a[1], a[2])
    )


@pulumi.runtime.test
def test_bucket_blocks_public_access_encrypts_and_requires_tls() -> Output[Any]:
    p = build()

    def check(bucket_id: str, bucket_arn: str) -> None:
        pab = inputs(p, "snapshots-public-access")
        assert pab["bucket"] == bucket_id
        for flag in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        ):
            assert pab[flag] is True, flag
        sse = inputs(p, "snapshots-encryption")
        assert sse["bucket"] == bucket_id
        assert sse["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
        own = inputs(p, "snapshots-ownership")
        assert own["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        rule, deltas = inputs(p, "snapshots-lifecycle")["rules"]
        assert rule["status"] == "Enabled"
        assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}
        # Bulk loads' deltas expire, and only after the DLQ could still redrive their message.
        assert deltas["filter"] == {"prefix": "deltas/"} and deltas["status"] == "Enabled"
        assert deltas["expiration"]["days"] * 86_400 > DLQ_RETENTION_S
        policy = json.loads(inputs(p, "snapshots-tls-only")["policy"])
        (deny,) = policy["Statement"]
        assert deny["Effect"] == "Deny"
        assert deny["Principal"] == "*"
        assert deny["Action"] == "s3:*"
        assert deny["Resource"] == [bucket_arn, f"{bucket_arn}/*"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    return Output.all(settled(p), p.bucket.id, p.bucket.arn).apply(lambda a: check(a[1], a[2]))


@pulumi.runtime.test
def test_alarms_watch_dlq_age_errors_and_throttles() -> Output[Any]:
    p = build(oldest_message_alarm_s=600, alarm_topic_arn="arn:aws:sns:us-east-1:1:oncall")

    def check(queue: str, dlq: str, failures: str, compactor: str, forwarder: str) -> None:
        alarms = {
            (a["namespace"], a["metricName"], next(iter(a["dimensions"].values()))): a
            for a in MOCKS.of_type("aws:cloudwatch/metricAlarm:MetricAlarm", f"{p._name}-").values()
        }
        expected = {
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq): 0,
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", failures): 0,
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", queue): 600,
            ("AWS/Lambda", "Errors", compactor): 0,
            ("AWS/Lambda", "Throttles", compactor): 0,
            ("AWS/Lambda", "Errors", forwarder): 0,
        }
        assert {k: a["threshold"] for k, a in alarms.items()} == expected
        for a in alarms.values():
            assert a["comparisonOperator"] == "GreaterThanThreshold"
            assert a["alarmActions"] == ["arn:aws:sns:us-east-1:1:oncall"]

    return Output.all(
        settled(p),
        p.queue.name,
        p.dlq.name,
        p.stream_failures.name,
        p.compactor.name,
        p.forwarder.name,
    ).apply(lambda a: check(*a[1:]))


@pulumi.runtime.test
def test_code_archive_holds_handlers_and_package_only() -> Output[Any]:
    p = build()

    def check(code: Any) -> None:
        files = set(code.assets)
        assert {"stream_forwarder.py", "enhanced_compaction_handler.py"} <= files
        assert "chroma_compactor/settings.py" in files
        assert "chroma_compactor/py.typed" in files
        assert not any("__pycache__" in f or ".egg-info" in f for f in files)

    return Output.all(settled(p), p.compactor.code).apply(lambda a: check(a[1]))


@pulumi.runtime.test
def test_the_query_function_is_reached_by_an_iam_guarded_url_and_only_reads() -> Output[Any]:
    p = build()

    def check() -> None:
        fn = inputs(p, "query")
        url = inputs(p, "query-url")
        policy = json.loads(inputs(p, "query-policy")["policy"])
        assert fn["handler"] == "query_handler.handler"
        assert fn["runtime"] == "python3.12"
        assert "reservedConcurrentExecutions" not in fn  # reads scale freely
        assert url["authorizationType"] == "AWS_IAM"
        actions = {a for s in policy["Statement"] for a in s["Action"]}
        assert actions == {
            "dynamodb:GetItem",
            "s3:GetObject",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        }

    return checked(p, check)


@pulumi.runtime.test
def test_sharded_collections_get_one_compactor_per_shard_group() -> Output[Any]:
    p = build({"queueType": "fifo", "collectionShards": '{"docs": 4, "notes": 2}'})

    def check() -> None:
        assert inputs(p, "compactor")["reservedConcurrentExecutions"] == 6
        env = inputs(p, "compactor")["environment"]["variables"]
        assert json.loads(env["COLLECTION_SHARDS"]) == {"docs": 4, "notes": 2}

    return checked(p, check)
