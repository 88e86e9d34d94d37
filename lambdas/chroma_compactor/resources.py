"""Create a pipeline's tables, queues and bucket from the settings model.

Local mode and the tests build their world with this, from the same settings the Lambdas read,
so names and limits never drift from what the Pulumi program deploys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chroma_compactor.settings import QueueType

if TYPE_CHECKING:
    from chroma_compactor.wiring import Clients

# Limits shared with the Pulumi program.
MAIN_RETENTION_S = 4 * 86_400
DLQ_RETENTION_S = 14 * 86_400
MAX_RECEIVE_COUNT = 3
COMPACTOR_TIMEOUT_S = 900
# Longer than the compactor's timeout, so a message in a running cycle never reappears.
VISIBILITY_TIMEOUT_S = COMPACTOR_TIMEOUT_S + 60


@dataclass(frozen=True)
class PipelineNames:
    source_table: str
    control_table: str
    bucket: str
    queue: str
    dlq: str

    @classmethod
    def for_prefix(cls, prefix: str, queue_type: QueueType) -> PipelineNames:
        suffix = ".fifo" if queue_type is QueueType.FIFO else ""
        return cls(
            source_table=f"{prefix}-source",
            control_table=f"{prefix}-control",
            bucket=f"{prefix}-snapshots",
            queue=f"{prefix}-compaction{suffix}",
            dlq=f"{prefix}-compaction-dlq{suffix}",
        )


@dataclass(frozen=True)
class CreatedPipeline:
    stream_arn: str
    queue_url: str
    queue_arn: str
    dlq_url: str


def create_pipeline(
    clients: Clients, names: PipelineNames, queue_type: QueueType
) -> CreatedPipeline:
    ddb = clients.dynamodb
    source = ddb.create_table(
        TableName=names.source_table,
        AttributeDefinitions=[
            {"AttributeName": "collection", "AttributeType": "S"},
            {"AttributeName": "id", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "collection", "KeyType": "HASH"},
            {"AttributeName": "id", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    ddb.create_table(
        TableName=names.control_table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    fifo = queue_type is QueueType.FIFO
    fifo_attrs: dict[Any, str] = (
        {"FifoQueue": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    )
    dlq_url = clients.sqs.create_queue(
        QueueName=names.dlq,
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S), **fifo_attrs},
    )["QueueUrl"]
    dlq_arn = clients.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    queue_url = clients.sqs.create_queue(
        QueueName=names.queue,
        Attributes={
            "MessageRetentionPeriod": str(MAIN_RETENTION_S),
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
            ),
            **fifo_attrs,
        },
    )["QueueUrl"]
    queue_arn = clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    clients.s3.create_bucket(Bucket=names.bucket)
    return CreatedPipeline(
        stream_arn=source["TableDescription"]["LatestStreamArn"],
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
    )
