"""Chaos: compactor and forwarder processes SIGKILLed at random while a writer writes.

`local up --no-workers` serves moto on 127.0.0.1; this test is the event source mappings.
A writer thread puts, updates, deletes and re-creates records over a small key space; the main
thread runs `forward --once` and `compact --once` processes back to back and kills some of them
at a random moment; a poller watches every collection's pointer version. After the writer stops,
a clean drain (no kills) must leave exports that equal the table exactly, pointer versions that
only grew and an empty DLQ.

The short run is part of `make test`; the slow runs (`make test-slow`, standard and FIFO queue)
write for ``CHAOS_SECONDS`` (default 120). ``CHAOS_SEED`` fixes the randomness (printed, with
every kill's time, so a failure replays); ``CHAOS_REPORT`` names a JSON file that each run adds
its counts to (for docs/reliability.md).
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

from chroma_compactor.pointer import PointerTable

if TYPE_CHECKING:
    from e2e_support import LocalProcess

pytestmark = pytest.mark.e2e

COLLECTIONS = ("chaos-a", "chaos-b")
KEYS = [f"k{i:03d}" for i in range(60)]  # per collection: small, so ids are hit again and again
SHORT_SECONDS = 20.0
SLOW_SECONDS = float(os.environ.get("CHAOS_SECONDS", "120"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))
# Fast recovery from a kill: short leases, short invisibility of a dead cycle's messages.
FAST = {
    "LEASE_SECONDS": "3",
    "LEASE_WAIT_SECONDS": "5",
    "FETCH_SECONDS": "0.5",
    "VISIBILITY_MARGIN_SECONDS": "2",
    "MAX_MESSAGES_PER_CYCLE": "300",
}
BUDGET = 30  # seconds a `compact --once` may take; its messages hide this long + margin
DRAIN_BUDGET = 120  # nothing is killed in the drain: long cycles, less start-up per message
STALL_S = 120.0  # the drain fails if the backlog stops shrinking for this long


class Writer(threading.Thread):
    """Puts, metadata updates, deletes and re-creates, with revs that grow across re-creation."""

    def __init__(self, local: LocalProcess, rng: random.Random, seconds: float) -> None:
        super().__init__(daemon=True)
        self.ddb = local.client("dynamodb")
        self.table = local.env["SOURCE_TABLE_NAME"]
        self.rng, self.seconds = rng, seconds
        self.rev = {(c, k): 0 for c in COLLECTIONS for k in KEYS}
        self.live: set[tuple[str, str]] = set()
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
        at = (self.rng.choice(COLLECTIONS), self.rng.choice(KEYS))
        ref = {"collection": {"S": at[0]}, "id": {"S": at[1]}}
        self.writes += 1
        roll = self.rng.random()
        if roll < 0.2:
            self.ddb.delete_item(TableName=self.table, Key=ref)
            self.live.discard(at)
            return
        self.rev[at] += 1
        rev = self.rev[at]
        metadata = {"M": {"rev": {"N": str(rev)}, "even": {"BOOL": rev % 2 == 0}}}
        if roll < 0.4 and at in self.live:  # metadata and document only; the embedding stays
            self.ddb.update_item(
                TableName=self.table,
                Key=ref,
                UpdateExpression="SET #r = :r, metadata = :m, document = :d",
                ExpressionAttributeNames={"#r": "rev"},
                ExpressionAttributeValues={
                    ":r": {"N": str(rev)},
                    ":m": metadata,
                    ":d": {"S": f"{at[1]} updated at {rev}"},
                },
            )
            return
        embedding = np.random.default_rng([rev, KEYS.index(at[1])]).random(8, dtype=np.float32)
        self.ddb.put_item(
            TableName=self.table,
            Item={
                **ref,
                "rev": {"N": str(rev)},
                "embedding": {"B": embedding.tobytes()},
                "document": {"S": f"{at[1]} at {rev}"},
                "metadata": metadata,
            },
        )
        self.live.add(at)


class VersionPoller(threading.Thread):
    """Every pointer version a reader could see during the run, in the order seen."""

    def __init__(self, local: LocalProcess) -> None:
        super().__init__(daemon=True)
        self.pointers = PointerTable(local.client("dynamodb"), local.env["CONTROL_TABLE_NAME"])
        self.seen: dict[str, list[int]] = {c: [] for c in COLLECTIONS}
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.wait(0.25):
                self.poll()
        except BaseException as e:
            self.error = e

    def poll(self) -> None:
        for c, seen in self.seen.items():
            version = self.pointers.read(c).version
            if not seen or seen[-1] != version:
                seen.append(version)


class Chaos:
    """Runs CLI processes as the event source mappings would, killing some with SIGKILL."""

    def __init__(self, local: LocalProcess, rng: random.Random) -> None:
        self.local, self.rng = local, rng
        self.env = {**local.env, **FAST}
        self.kills: list[tuple[float, str]] = []
        self.compactions = 0
        self.processes = 0
        self.messages = 0
        self.abandons: dict[str, int] = {}
        self.started = time.monotonic()

    def forward(self, kill_chance: float = 0.0) -> dict[str, Any] | None:
        return self._run("forward", "--once", "--json", kill_chance=kill_chance, kill_within=2.0)

    def compact(self, kill_chance: float = 0.0, budget: int = BUDGET) -> None:
        self.compactions += 1
        report = self._run(
            "compact",
            "--once",
            "--json",
            "--budget",
            str(budget),
            kill_chance=kill_chance,
            kill_within=3,
            abandon_ok=True,
        )
        for queue in report or []:
            self.messages += queue["received"] + queue["fetched"]
            for outcome in queue["outcomes"]:
                if outcome["abandoned"]:  # gave its messages back; the invariants still hold
                    kind = outcome["abandoned"].split(":")[0]
                    self.abandons[kind] = self.abandons.get(kind, 0) + 1

    def status(self) -> dict[str, Any]:
        out = self._run("status", "--json", kill_chance=0, kill_within=0)
        assert out is not None
        return out

    def _run(
        self, *args: str, kill_chance: float, kill_within: float, abandon_ok: bool = False
    ) -> Any:
        """The process's JSON output; None if it was killed.

        `compact` exits 1 when a collection's cycle was abandoned (a deadline, a lost lease).
        """
        process = subprocess.Popen(
            [sys.executable, "-m", "chroma_compactor", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes += 1
        if self.rng.random() < kill_chance:
            time.sleep(self.rng.uniform(0, kill_within))
            if process.poll() is None:
                process.kill()  # SIGKILL: no finally, no atexit, no lease release
                at = round(time.monotonic() - self.started, 2)
                self.kills.append((at, args[0]))
                print(f"killed {args[0]} at {at}s")
        out, err = process.communicate(timeout=180)
        if process.returncode == -9:
            return None
        if process.returncode != 0 and not (abandon_ok and process.returncode == 1):
            raise AssertionError(f"{args} exited {process.returncode}:\n{out}\n{err[-3000:]}")
        return json.loads(out)


def test_short_chaos_loses_nothing_and_the_drain_converges(
    local: LocalProcess, tmp_path: Path
) -> None:
    _chaos(local, tmp_path, SHORT_SECONDS)


@pytest.mark.slow
@pytest.mark.parametrize("local", ["standard", "fifo"], indirect=True)
def test_long_chaos_loses_nothing_and_the_drain_converges(
    local: LocalProcess, tmp_path: Path
) -> None:
    _chaos(local, tmp_path, SLOW_SECONDS)


def _chaos(local: LocalProcess, tmp_path: Path, seconds: float) -> None:
    queue_type = local.env["QUEUE_TYPE"]
    print(f"CHAOS_SEED={SEED} CHAOS_SECONDS={seconds} queue {queue_type}")
    rng = random.Random(SEED)
    writer = Writer(local, random.Random(rng.random()), seconds)
    poller = VersionPoller(local)
    chaos = Chaos(local, rng)
    writer.start()
    poller.start()
    while writer.is_alive():
        chaos.forward(kill_chance=0.2)
        # Until one compactor has died, every one is killed: a short run must not go unscathed.
        killed = any(what == "compact" for _, what in chaos.kills)
        chaos.compact(kill_chance=0.6 if killed else 1.0)
    assert writer.error is None, writer.error

    status = _drain(chaos)
    poller.done.set()
    poller.join()
    poller.poll()

    assert poller.error is None, poller.error
    table = _table(local)
    for collection in COLLECTIONS:
        state = _export(local, tmp_path, collection)
        rows = table.get(collection, {})
        assert sorted(state) == sorted(rows), f"{collection}: lost or resurrected ids"
        for key, (embedding, document, metadata) in rows.items():
            assert np.allclose(state[key][0], embedding, rtol=1e-6), (collection, key)
            assert state[key][1:] == (document, metadata), (collection, key)
        seen = poller.seen[collection]
        assert seen == sorted(seen), f"{collection}: pointer went back: {seen}"
        assert seen[-1] > 0, f"{collection}: never committed"
    assert chaos.kills, "nothing was killed: not a chaos run"
    assert [q["dlq_visible"] for q in status["queues"]] == [0] * len(status["queues"])
    summary = {
        "seed": SEED,
        "queue_type": queue_type,
        "seconds": seconds,
        "writes": writer.writes,
        "processes": chaos.processes,
        "compactions": chaos.compactions,
        "kills": len(chaos.kills),
        "messages": chaos.messages,
        "abandons": chaos.abandons,
        "versions": {c: seen[-1] for c, seen in poller.seen.items()},
        "versions_seen": sum(len(seen) for seen in poller.seen.values()),
        "records": sum(len(rows) for rows in table.values()),
    }
    print(f"chaos: {json.dumps(summary)}; kills at {chaos.kills}")
    if report := os.environ.get("CHAOS_REPORT"):
        _add_to_report(Path(report), summary)


def _drain(chaos: Chaos) -> dict[str, Any]:
    """Forward and compact, unkilled, until the stream, the queue and the in-flight are empty.

    A FIFO queue drains slowly (a commit per group batch), so the deadline is on progress: a
    commit or a forwarded record every STALL_S. Returns the last `status --json`.
    """
    status: dict[str, Any] = {}
    commits, progressed = -1, time.monotonic()
    while time.monotonic() - progressed < STALL_S:
        forwarded = chaos.forward()
        status = chaos.status()
        visible = sum(q["visible"] for q in status["queues"])
        hidden = sum(q["in_flight"] for q in status["queues"])
        versions = sum(c["version"] for c in status["collections"])
        if versions > commits or (forwarded is not None and forwarded["sent"]):
            commits, progressed = versions, time.monotonic()
        if visible:
            chaos.compact(budget=DRAIN_BUDGET)
        elif hidden:
            time.sleep(1)  # a killed cycle's messages: back when their visibility runs out
        elif forwarded is not None and forwarded["sent"] == 0:
            return status
    raise AssertionError(
        f"the drain made no progress for {STALL_S}s (seed {SEED}); status:\n"
        + json.dumps(status, indent=2)
    )


def _export(local: LocalProcess, tmp_path: Path, collection: str) -> dict[str, Any]:
    out = tmp_path / f"export-{collection}"
    local.cli("export", collection, "--out", str(out))
    client = chromadb.PersistentClient(path=str(out))
    got = client.get_collection(collection).get(include=["embeddings", "documents", "metadatas"])
    client.close()
    return {
        i: (np.asarray(e, dtype=np.float32), d, m)
        for i, e, d, m in zip(
            got["ids"], got["embeddings"], got["documents"], got["metadatas"], strict=True
        )
    }


def _table(local: LocalProcess) -> dict[str, dict[str, Any]]:
    """collection -> id -> (embedding, document, metadata), read consistently."""
    ddb = local.client("dynamodb")
    state: dict[str, dict[str, Any]] = {}
    for page in ddb.get_paginator("scan").paginate(
        TableName=local.env["SOURCE_TABLE_NAME"], ConsistentRead=True
    ):
        for item in page["Items"]:
            metadata = {
                "rev": int(item["metadata"]["M"]["rev"]["N"]),
                "even": item["metadata"]["M"]["even"]["BOOL"],
            }
            state.setdefault(item["collection"]["S"], {})[item["id"]["S"]] = (
                np.frombuffer(item["embedding"]["B"], dtype=np.float32),
                item["document"]["S"],
                metadata,
            )
    return state


def _add_to_report(path: Path, summary: dict[str, Any]) -> None:
    """Counts add up over the runs of one pytest session; each run is listed too."""
    report = json.loads(path.read_text()) if path.exists() else {"runs": []}
    report["runs"].append(summary)
    for key in ("writes", "processes", "compactions", "kills", "messages", "records"):
        report[key] = report.get(key, 0) + summary[key]
    report["seconds"] = report.get("seconds", 0) + summary["seconds"]
    path.write_text(json.dumps(report, indent=2))
