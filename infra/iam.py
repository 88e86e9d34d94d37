"""Least-privilege policy documents for the two functions, built from resource ARNs.

Every statement names its actions and its resources. A `*` appears only where AWS cannot name the
resource in advance; each such place is listed in `WILDCARD_ALLOWLIST` with the reason, and the
tests fail on any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chroma_compactor.delta import DELTA_PREFIX

PolicyDocument = dict[str, Any]


@dataclass(frozen=True)
class AllowedWildcard:
    """A resource pattern with a `*` that AWS requires, for exactly these actions."""

    actions: frozenset[str]
    pattern: re.Pattern[str]
    reason: str


WILDCARD_ALLOWLIST: tuple[AllowedWildcard, ...] = (
    AllowedWildcard(
        actions=frozenset({"logs:CreateLogStream", "logs:PutLogEvents"}),
        pattern=re.compile(r"^arn:aws:logs:[^*]+:log-group:[^*]+:\*$"),
        reason="Lambda names its log streams at run time; `:*` covers the streams of one "
        "log group that the program creates itself (so logs:CreateLogGroup is not granted)",
    ),
    AllowedWildcard(
        actions=frozenset({"dynamodb:ListStreams"}),
        pattern=re.compile(r"^arn:aws:dynamodb:[^*]+:table/[^*/]+/stream/\*$"),
        reason="ListStreams is authorised against the streams of a table, whose labels are not "
        "known in advance (AWS's own example policy for a stream-triggered Lambda)",
    ),
    AllowedWildcard(
        actions=frozenset({"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}),
        pattern=re.compile(r"^arn:aws:s3:::[^*/]+/[^*]+/\*$"),
        reason="snapshot objects are content-addressed blobs and numbered versions, named at "
        "run time; the pattern is limited to the snapshot prefix of one bucket (and, read "
        "only, to the deltas/ prefix where bulk loads put their records)",
    ),
)


def _statement(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


def _log_statement(log_group_arn: str) -> dict[str, Any]:
    return _statement(
        "WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"]
    )


def table_arn_of_stream(stream_arn: str) -> str:
    """`arn:…:table/T/stream/<label>` → `arn:…:table/T`."""
    return stream_arn.split("/stream/", 1)[0]


def forwarder_policy(
    *, stream_arn: str, queue_arn: str, failure_queue_arn: str, log_group_arn: str
) -> PolicyDocument:
    return {
        "Version": "2012-10-17",
        "Statement": [
            _statement(
                "ReadSourceStream",
                ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                [stream_arn],
            ),
            _statement(
                "ListSourceStreams",
                ["dynamodb:ListStreams"],
                [f"{table_arn_of_stream(stream_arn)}/stream/*"],
            ),
            # SendMessageBatch is authorised as sqs:SendMessage.
            _statement("SendCompactionMessages", ["sqs:SendMessage"], [queue_arn]),
            # The event source mapping's on-failure destination is sent with this role.
            _statement("SendStreamFailures", ["sqs:SendMessage"], [failure_queue_arn]),
            _log_statement(log_group_arn),
        ],
    }


def compactor_policy(
    *,
    control_table_arn: str,
    bucket_arn: str,
    snapshot_prefix: str,
    queue_arn: str,
    dlq_arn: str,
    log_group_arn: str,
) -> PolicyDocument:
    prefix = snapshot_prefix.strip("/")
    return {
        "Version": "2012-10-17",
        "Statement": [
            # Lease and pointer items; TransactWriteItems is authorised per item action
            # (ConditionCheckItem on the lease, UpdateItem/PutItem on the pointer).
            _statement(
                "LeaseAndPointer",
                [
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:Scan",
                ],
                [control_table_arn],
            ),
            _statement(
                "SnapshotObjects",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [f"{bucket_arn}/{prefix}/*"],
            ),
            _statement("ListSnapshots", ["s3:ListBucket"], [bucket_arn]),
            # Bulk loads' deltas (delta.py): named by run, read once or twice, never written here.
            _statement("ReadBulkLoadDeltas", ["s3:GetObject"], [f"{bucket_arn}/{DELTA_PREFIX}/*"]),
            _statement(
                "ConsumeCompactionQueue",
                [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                [queue_arn],
            ),
            _statement("ReadDeadLetterDepth", ["sqs:GetQueueAttributes"], [dlq_arn]),
            _log_statement(log_group_arn),
        ],
    }


def query_policy(
    *, control_table_arn: str, bucket_arn: str, snapshot_prefix: str, log_group_arn: str
) -> PolicyDocument:
    """Reads only: layouts and pointers, manifests and blobs. Queries never take a lease."""
    prefix = snapshot_prefix.strip("/")
    return {
        "Version": "2012-10-17",
        "Statement": [
            _statement("ReadLayoutsAndPointers", ["dynamodb:GetItem"], [control_table_arn]),
            _statement("ReadSnapshots", ["s3:GetObject"], [f"{bucket_arn}/{prefix}/*"]),
            _log_statement(log_group_arn),
        ],
    }


def lambda_assume_role_policy() -> PolicyDocument:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def tls_only_bucket_policy(bucket_arn: str) -> PolicyDocument:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def wildcard_violations(document: PolicyDocument) -> list[str]:
    """Every `*` in an Allow statement that the allow-list does not cover, described."""
    problems: list[str] = []
    for st in document["Statement"]:
        if st["Effect"] != "Allow":
            continue
        actions = [st["Action"]] if isinstance(st["Action"], str) else list(st["Action"])
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else list(st["Resource"])
        problems += [f"{st.get('Sid')}: wildcard action {a}" for a in actions if "*" in a]
        for r in resources:
            if "*" not in r:
                continue
            if not any(
                w.pattern.match(r) and set(actions) <= w.actions for w in WILDCARD_ALLOWLIST
            ):
                problems.append(f"{st.get('Sid')}: wildcard resource {r} for {actions}")
    return problems
