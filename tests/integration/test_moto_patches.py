"""moto 5.2.5 recounts a whole queue for every message sent or received; local mode patches that.

Each test runs in a fresh interpreter so that patched and unpatched moto never share a process.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import boto3
from moto import mock_aws
from moto.sqs import models
if sys.argv[1] == "patched":
    from chroma_compactor import moto_patches
    moto_patches.apply()
scans = 0
original = models.Queue.approximate_number_of_messages.fget
def counting(self):
    global scans
    scans += 1
    return original(self)
models.Queue.approximate_number_of_messages = property(counting)
with mock_aws():
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q", Attributes={"DelaySeconds": "0"})["QueueUrl"]
    for i in range(20):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    before = scans
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5, VisibilityTimeout=60)["Messages"]
    sqs.send_message(QueueUrl=url, MessageBody="one more")
    per_call_scans = scans - before
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    named = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible", "VisibilityTimeout"])["Attributes"]
    print(json.dumps({"scans": per_call_scans, "received": len(got), "attrs": attrs, "named": named}))
"""


def _run(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])  # type: ignore[no-any-return]


def test_unpatched_moto_recounts_the_queue_on_every_send_and_receive() -> None:
    assert _run("plain")["scans"] >= 6  # 5 messages received + 1 sent, each a full scan


def test_patched_moto_answers_the_same_without_scanning() -> None:
    plain, patched = _run("plain"), _run("patched")

    assert patched["scans"] == 0
    assert patched["received"] == plain["received"] == 5
    drop = {"CreatedTimestamp", "LastModifiedTimestamp", "QueueArn"}
    strip = lambda attrs: {k: v for k, v in attrs.items() if k not in drop}  # noqa: E731
    assert strip(patched["attrs"]) == strip(plain["attrs"])  # type: ignore[arg-type]
    assert patched["attrs"]["ApproximateNumberOfMessages"] == "16"  # type: ignore[index]
    assert patched["attrs"]["ApproximateNumberOfMessagesNotVisible"] == "5"  # type: ignore[index]
    assert patched["attrs"]["ApproximateNumberOfMessagesDelayed"] == "1"  # type: ignore[index]
    assert (
        patched["named"]
        == plain["named"]
        == {
            "ApproximateNumberOfMessagesNotVisible": "5",
            "VisibilityTimeout": "30",
        }
    )
