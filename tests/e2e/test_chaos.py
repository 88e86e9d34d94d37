"""Chaos: compactor and forwarder processes SIGKILLed at random while writers write.

`local up --no-workers` serves moto on 127.0.0.1; this test is the event source mappings.
A writer thread puts, updates, deletes and re-creates records over a small key space; the main
thread runs `forward --once` and `compact --once` processes back to back and kills some of them
at a random moment. After the writer stops, a clean drain (no kills) must leave an export that
equals the table exactly, with pointer versions that only grew and an empty DLQ.

``CHAOS_SECONDS`` (default 25) sets how long the writer writes, ``CHAOS_SEED`` the randomness
(printed, so a failure replays), ``CHAOS_REPORT`` a JSON file for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb
import numpy as np
import pytest

if TYPE_CHECKING:
    from e2e_support import LocalProcess

pytestmark = pytest.mark.e2e

COLLECTION = "chaos"
KEYS = [f"k{i:03d}" for i in range(60)]
SECONDS = float(os.environ.get("CHAOS_SECONDS", "25"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))
# Fast recovery from a kill: short leases, short invisibility of a dead cycle's messages.
FAST = {
    "LEASE_SECONDS": "3",
    "LEASE_WAIT_SECONDS": "5",
    "FETCH_SECONDS": "0.5",
    "VISIBILITY_MARGIN_SECONDS": "2",
    "MAX_MESSAGES_PER_CYCLE": "300",
}
BUDGET = "30"  # seconds a `compact --once` may take; its messages hide this long + margin


class Writer(threading.Thread):
    """Random writes with revs that keep growing across delete and re-create; the model."""

    def __init__(self, local: LocalProcess, rng: random.Random, seconds: float) -> None:
        super().__init__(daemon=True)
        self.ddb = local.client("dynamodb")
        self.table = local.env["SOURCE_TABLE_NAME"]
        self.rng, self.seconds = rng, seconds
        self.rev = dict.fromkeys(KEYS, 0)
        self.writes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                self._one()
                time.sleep(self.rng.uniform(0, 0.02))
        except BaseException as e:  # surfaced by the test, not lost in the thread
            self.error = e

    def _one(self) -> None:
        key = self.rng.choice(KEYS)
        ref = {"collection": {"S": COLLECTION}, "id": {"S": key}}
        self.writes += 1
        if self.rng.random() < 0.2:
            self.ddb.delete_item(TableName=self.table, Key=ref)
            return
        self.rev[key] += 1
        rev = self.rev[key]
        embedding = np.random.default_rng(rev * 1000 + KEYS.index(key)).random(8, dtype=np.float32)
        self.ddb.put_item(
            TableName=self.table,
            Item={
                **ref,
                "rev": {"N": str(rev)},
                "embedding": {"B": embedding.tobytes()},
                "document": {"S": f"{key} at {rev}"},
                "metadata": {"M": {"rev": {"N": str(rev)}, "even": {"BOOL": rev % 2 == 0}}},
            },
        )


class Chaos:
    def __init__(self, local: LocalProcess, rng: random.Random) -> None:
        self.local, self.rng = local, rng
        self.env = {**local.env, **FAST}
        self.kills: list[tuple[float, str]] = []
        self.runs = 0
        self.started = time.monotonic()
        self.versions: list[int] = []

    def run(self, *args: str, kill_chance: float, kill_within: float) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "chroma_compactor", *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.runs += 1
        if self.rng.random() < kill_chance:
            time.sleep(self.rng.uniform(0, kill_within))
            if process.poll() is None:
                process.kill()  # SIGKILL: no finally, no atexit, no lease release
                self.kills.append((round(time.monotonic() - self.started, 2), args[0]))
        _, err = process.communicate(timeout=180)
        if process.returncode not in (0, -9):
            raise AssertionError(f"{args} exited {process.returncode}:\n{err[-2000:]}")
        self.versions.append(self._version())

    def _version(self) -> int:
        item = (
            self.local.client("dynamodb")
            .get_item(
                TableName=self.local.env["CONTROL_TABLE_NAME"],
                Key={"pk": {"S": f"pointer#{COLLECTION}"}},
                ConsistentRead=True,
            )
            .get("Item")
        )
        return int(item["version"]["N"]) if item else 0


def test_killed_processes_lose_nothing_and_the_drain_converges(
    local: LocalProcess, tmp_path: Path
) -> None:
    print(f"CHAOS_SEED={SEED} CHAOS_SECONDS={SECONDS}")
    rng = random.Random(SEED)
    writer = Writer(local, random.Random(rng.random()), SECONDS)
    chaos = Chaos(local, rng)
    writer.start()
    while writer.is_alive():
        chaos.run("forward", "--once", kill_chance=0.2, kill_within=2.0)
        chaos.run("compact", "--once", "--budget", BUDGET, kill_chance=0.6, kill_within=3.0)
    assert writer.error is None, writer.error

    _drain(chaos)

    state = _export(local, tmp_path)
    table = _table(local)
    assert sorted(state) == sorted(table), "lost or resurrected ids"
    for key, (embedding, document, metadata) in table.items():
        assert np.allclose(state[key][0], embedding, rtol=1e-6), key
        assert state[key][1:] == (document, metadata), key
    assert chaos.versions == sorted(chaos.versions)
    dlq = local.client("sqs").get_queue_attributes(
        QueueUrl=local.env["COMPACTION_QUEUE_URL"].replace("compaction", "compaction-dlq"),
        AttributeNames=["ApproximateNumberOfMessages"],
    )
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "0"
    summary = {
        "seed": SEED,
        "seconds": SECONDS,
        "writes": writer.writes,
        "processes": chaos.runs,
        "kills": len(chaos.kills),
        "versions": chaos.versions[-1],
        "records": len(table),
    }
    print(f"chaos: {summary}; kills at {chaos.kills}")
    if report := os.environ.get("CHAOS_REPORT"):
        Path(report).write_text(json.dumps(summary))


def _drain(chaos: Chaos, deadline_s: float = 240) -> None:
    """Forward and compact, unkilled, until the stream and the queue hold nothing."""
    sqs = chaos.local.client("sqs")
    url = chaos.local.env["COMPACTION_QUEUE_URL"]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        chaos.run("forward", "--once", kill_chance=0, kill_within=0)
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        visible, hidden = (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )
        if visible:
            chaos.run("compact", "--once", "--budget", BUDGET, kill_chance=0, kill_within=0)
        elif hidden:
            time.sleep(1)  # a killed cycle's messages: back when their visibility runs out
        else:
            return
    status = subprocess.run(
        [sys.executable, "-m", "chroma_compactor", "status", "--json"],
        env=chaos.env,
        capture_output=True,
        text=True,
        check=False,
    )
    raise AssertionError(f"no convergence in {deadline_s}s; status:\n{status.stdout}")


def _export(local: LocalProcess, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "export"
    local.cli("export", COLLECTION, "--out", str(out))
    client = chromadb.PersistentClient(path=str(out))
    got = client.get_collection(COLLECTION).get(include=["embeddings", "documents", "metadatas"])
    client.close()
    return {
        i: (np.asarray(e, dtype=np.float32), d, m)
        for i, e, d, m in zip(
            got["ids"], got["embeddings"], got["documents"], got["metadatas"], strict=True
        )
    }


def _table(local: LocalProcess) -> dict[str, Any]:
    ddb = local.client("dynamodb")
    state = {}
    for page in ddb.get_paginator("query").paginate(
        TableName=local.env["SOURCE_TABLE_NAME"],
        KeyConditionExpression="#c = :c",
        ExpressionAttributeNames={"#c": "collection"},
        ExpressionAttributeValues={":c": {"S": COLLECTION}},
        ConsistentRead=True,
    ):
        for item in page["Items"]:
            metadata = {
                "rev": int(item["metadata"]["M"]["rev"]["N"]),
                "even": item["metadata"]["M"]["even"]["BOOL"],
            }
            state[item["id"]["S"]] = (
                np.frombuffer(item["embedding"]["B"], dtype=np.float32),
                item["document"]["S"],
                metadata,
            )
    return state
