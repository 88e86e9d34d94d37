"""moto 5.2.5 recounts a whole queue for every message sent or received, and redelivers only the
last message of an expired FIFO group; local mode patches both.

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

FIFO_SCRIPT = """
import json, sys, time
import boto3
from moto import mock_aws
if sys.argv[1] == "patched":
    from chroma_compactor import moto_patches
    moto_patches.apply()
with mock_aws():
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    for i in range(3):
        sqs.send_message(
            QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g", MessageDeduplicationId=str(i)
        )
    receive = lambda: [
        m["Body"]
        for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1
        ).get("Messages", [])
    ]
    first = receive()
    time.sleep(1.2)  # the consumer died: its visibility timeout runs out
    print(json.dumps({"first": first, "after_timeout": receive()}))
"""

DELETE_SCRIPT = """
import json, sys
import boto3
from moto import mock_aws
from moto.sqs import models
if sys.argv[1] == "patched":
    from chroma_compactor import moto_patches
    moto_patches.apply()
scans = 0
original = models.Message.had_receipt_handle
def counting(self, handle):
    global scans
    scans += 1
    return original(self, handle)
models.Message.had_receipt_handle = counting
with mock_aws():
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for i in range(30):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
    entries = lambda ms: [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(ms)]
    first = sqs.delete_message_batch(QueueUrl=url, Entries=entries(got[:5]))
    mixed = entries(got[3:7]) + [{"Id": "bogus", "ReceiptHandle": "not-a-handle"}]
    second = sqs.delete_message_batch(QueueUrl=url, Entries=mixed)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[9]["ReceiptHandle"])
    left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    print(json.dumps({
        "scans": scans,
        "first_ok": sorted(e["Id"] for e in first.get("Successful", [])),
        "second_ok": sorted(e["Id"] for e in second.get("Successful", [])),
        "second_failed": [(e["Id"], e["Code"]) for e in second.get("Failed", [])],
        "visible": left["ApproximateNumberOfMessages"],
        "in_flight": left["ApproximateNumberOfMessagesNotVisible"],
    }))
"""


def _run(mode: str, script: str = SCRIPT) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True
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


def test_unpatched_moto_redelivers_only_the_last_message_of_an_expired_fifo_group() -> None:
    assert _run("plain", FIFO_SCRIPT) == {"first": ["m0", "m1", "m2"], "after_timeout": ["m2"]}


def test_patched_moto_redelivers_the_whole_expired_fifo_group_in_order() -> None:
    assert _run("patched", FIFO_SCRIPT) == {
        "first": ["m0", "m1", "m2"],
        "after_timeout": ["m0", "m1", "m2"],
    }


def test_unpatched_moto_scans_the_queue_for_every_deleted_receipt_handle() -> None:
    # each of the 8 real deletes passes over the 20+ messages left in the queue, at least once
    assert _run("plain", DELETE_SCRIPT)["scans"] >= 8 * 20


def test_patched_moto_deletes_through_an_index_with_the_same_answers() -> None:
    plain, patched = _run("plain", DELETE_SCRIPT), _run("patched", DELETE_SCRIPT)

    assert patched["scans"] == 0
    assert {k: v for k, v in patched.items() if k != "scans"} == {
        k: v for k, v in plain.items() if k != "scans"
    }
    assert patched["second_failed"] == [["bogus", "ReceiptHandleIsInvalid"]]
    assert (patched["visible"], patched["in_flight"]) == ("20", "2")  # 8 of 10 deleted
