"""Every IAM statement the program declares, and no wildcard that is not allow-listed."""

from __future__ import annotations

import json
from typing import Any

import pulumi
from infra_mocks import MOCKS
from infra_support import build, settled
from pulumi import Output

from infra import iam

POLICY = "aws:iam/rolePolicy:RolePolicy"


def _policy(name: str) -> dict[str, Any]:
    typ, declared = MOCKS.resources[name]
    assert typ == POLICY
    return dict(json.loads(declared["policy"]))


def _by_sid(doc: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    return {s["Sid"]: (s["Action"], s["Resource"]) for s in doc["Statement"]}


@pulumi.runtime.test
def test_forwarder_statements_name_their_actions_and_resources() -> Output[Any]:
    p = build()

    def check(stream: str, queue: str, failures: str, logs: str, table: str) -> None:
        doc = _policy(f"{p._name}-forwarder-policy")
        assert _by_sid(doc) == {
            "ReadSourceStream": (
                ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                [stream],
            ),
            "ListSourceStreams": (["dynamodb:ListStreams"], [f"{table}/stream/*"]),
            "SendCompactionMessages": (["sqs:SendMessage"], [queue]),
            "SendStreamFailures": (["sqs:SendMessage"], [failures]),
            "WriteOwnLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], [f"{logs}:*"]),
        }
        assert iam.wildcard_violations(doc) == []

    fwd_logs = log_group_arn(p, "forwarder")
    return Output.all(
        settled(p),
        p.source_stream_arn,
        p.queue.arn,
        p.stream_failures.arn,
        fwd_logs,
        p.source_table.arn,
    ).apply(lambda a: check(*a[1:]))


def log_group_arn(p: Any, role: str) -> Output[str]:
    return settled(p).apply(
        lambda _: (
            "arn:aws:logs:us-east-1:123456789012:log-group:"
            + MOCKS.resources[f"{p._name}-{role}-logs"][1]["name"]
        )
    )


@pulumi.runtime.test
def test_compactor_statements_name_their_actions_and_resources() -> Output[Any]:
    p = build({"snapshotPrefix": "snaps"})

    def check(table: str, bucket: str, queue: str, dlq: str, logs: str) -> None:
        doc = _policy(f"{p._name}-compactor-policy")
        assert _by_sid(doc) == {
            "LeaseAndPointer": (
                [
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:Scan",
                    "dynamodb:UpdateItem",
                ],
                [table],
            ),
            "SnapshotObjects": (
                ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                [f"{bucket}/snaps/*"],
            ),
            "ListSnapshots": (["s3:ListBucket"], [bucket]),
            "ReadBulkLoadDeltas": (["s3:GetObject"], [f"{bucket}/deltas/*"]),
            "ConsumeCompactionQueue": (
                [
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                    "sqs:ReceiveMessage",
                ],
                [queue],
            ),
            "ReadDeadLetterDepth": (["sqs:GetQueueAttributes"], [dlq]),
            "WriteOwnLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], [f"{logs}:*"]),
        }
        actions = {a for s in doc["Statement"] for a in s["Action"]}
        assert "cloudwatch:PutMetricData" not in actions  # EMF goes through the logs
        assert "logs:CreateLogGroup" not in actions  # the program creates the log group
        assert iam.wildcard_violations(doc) == []

    return Output.all(
        settled(p),
        p.control_table.arn,
        p.bucket.arn,
        p.queue.arn,
        p.dlq.arn,
        log_group_arn(p, "compactor"),
    ).apply(lambda a: check(*a[1:]))


@pulumi.runtime.test
def test_every_declared_policy_is_free_of_unlisted_wildcards() -> Output[Any]:
    pipelines = [build(), build({"queueType": "fifo"}), build(existing_source_table="legacy")]

    def check() -> None:
        policies = {
            n: json.loads(i["policy"])
            for p in pipelines
            for n, i in MOCKS.of_type(POLICY, f"{p._name}-").items()
        }
        assert len(policies) == 3 * len(pipelines)  # one role, one policy per function
        for name, doc in policies.items():
            assert iam.wildcard_violations(doc) == [], name
        roles = [
            json.loads(i["assumeRolePolicy"])
            for p in pipelines
            for i in MOCKS.of_type("aws:iam/role:Role", f"{p._name}-").values()
        ]
        assert all(
            r["Statement"] == [iam.lambda_assume_role_policy()["Statement"][0]] for r in roles
        )

    return Output.all(*(settled(p) for p in pipelines)).apply(lambda _: check())


def test_the_wildcard_check_catches_what_is_not_allow_listed() -> None:
    def doc(action: str | list[str], resource: str) -> dict[str, Any]:
        return {
            "Statement": [{"Sid": "X", "Effect": "Allow", "Action": action, "Resource": resource}]
        }

    table = "arn:aws:dynamodb:us-east-1:1:table/t"
    assert iam.wildcard_violations(doc("s3:*", "arn:aws:s3:::b/p/k"))
    assert iam.wildcard_violations(doc("s3:GetObject", "*"))
    assert iam.wildcard_violations(doc("s3:GetObject", "arn:aws:s3:::b/*"))  # not under a prefix
    assert iam.wildcard_violations(doc("s3:ListBucket", "arn:aws:s3:::b/p/*"))  # wrong action
    assert iam.wildcard_violations(doc("dynamodb:GetItem", f"{table}/stream/*"))
    assert iam.wildcard_violations(doc("logs:CreateLogGroup", "arn:aws:logs:r:1:log-group:g:*"))
    assert not iam.wildcard_violations(doc("dynamodb:ListStreams", f"{table}/stream/*"))
    assert not iam.wildcard_violations(doc("s3:GetObject", "arn:aws:s3:::b/snapshots/*"))
    # The TLS-only bucket policy is a Deny: its `s3:*` and `*` principal are the point.
    assert not iam.wildcard_violations(iam.tls_only_bucket_policy("arn:aws:s3:::b"))


def test_every_allow_listed_wildcard_says_why() -> None:
    for w in iam.WILDCARD_ALLOWLIST:
        assert w.actions
        assert len(w.reason) > 40
        assert "*" not in "".join(w.actions)
