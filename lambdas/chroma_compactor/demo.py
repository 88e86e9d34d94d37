"""``chroma-compactor demo`` (``make run``): the whole pipeline, locally, on realistic data.

Two collections of clustered embeddings are written to the source table through the Writer
client, as a user's service would, then a wave of metadata changes, deletes and late updates of
deleted ids (the race the design we replace feared: the writer refuses them and reports them).
The local stack forwards and compacts it all; the demo then shows what each cycle did, queries a
snapshot, and checks that every snapshot equals the table.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chroma_compactor.local_stack import LocalStack
from chroma_compactor.validate import EMBEDDING_ATOL, EMBEDDING_RTOL
from chroma_compactor.writer import WriteFailure, Writer

if TYPE_CHECKING:
    from chroma_compactor.settings import QueueType, Settings
    from chroma_compactor.wiring import Clients

DIM = 64
TOPICS = ("databases", "search", "serverless", "storage", "networking", "ml")
COLLECTIONS = ("articles", "products")
_TIMEOUT_S = 240


@dataclass
class Tally:
    """What the compactor's "cycle finished" log lines said, per collection."""

    messages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    cycles: int = 0
    abandoned: int = 0

    @property
    def settled(self) -> int:
        return sum(self.messages.values())


class _TallyHandler(logging.Handler):
    """Reads the compactor's structured log, as an operator would read CloudWatch Logs."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.INFO)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() != "cycle finished":
            return
        data: dict[str, Any] = record.__dict__
        self.tally.cycles += 1
        if data.get("abandoned"):
            self.tally.abandoned += 1
            return
        collection = data["collection"]
        self.tally.messages[collection] += data["messages"]
        for key in ("applied", "coalesced", "stale", "not_found", "failed"):
            self.tally.counts[collection][key] += data[key]


def run_demo(data_dir: Path | None, port: int, queue_type: QueueType, records: int) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # logs and CI: room for the whole summary table
    with tempfile.TemporaryDirectory(prefix="chroma-compactor-demo-") as tmp:
        stack = LocalStack(data_dir or Path(tmp), port, queue_type)
        with stack.running(save=data_dir is not None) as info:
            return _demo(console, stack, info.settings(), records)


def _demo(console: Console, stack: LocalStack, settings: Settings, records: int) -> int:
    from chroma_compactor.pollers import Pollers, quiet_lambda_logs
    from chroma_compactor.wiring import Clients

    assert stack.info is not None
    quiet_lambda_logs(stack.data_dir / "logs")
    tally = Tally()
    logging.getLogger("chroma-compactor").addHandler(_TallyHandler(tally))
    clients = Clients.create()
    console.print(
        f"[bold]chroma-compactor demo[/]: moto at {stack.info.endpoint}, "
        f"{settings.queue_type.value} queue, data in {stack.data_dir}"
    )
    pollers = Pollers(settings, clients)
    pollers.start()
    try:
        started = time.monotonic()
        data = SampleData(records)
        writes, writes_ok = _write_everything(console, clients, settings, data)
        drained = _wait_for_compaction(console, tally, writes)
        elapsed = time.monotonic() - started
    finally:
        pollers.stop()
    _summary(console, clients, settings, tally, elapsed)
    ok = writes_ok and drained and _check(console, clients, settings, data) and not pollers.errors
    console.print("[bold green]demo passed[/]" if ok else "[bold red]demo failed[/]")
    return 0 if ok else 1


class SampleData:
    """Clustered vectors: records of one topic lie near each other, so queries mean something."""

    def __init__(self, per_collection: int, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.centers = {t: self.rng.normal(size=DIM).astype(np.float32) for t in TOPICS}
        self.per_collection = per_collection
        self.metadata: dict[tuple[str, str], dict[str, str | int | float | bool]] = {}

    def record(self, collection: str, i: int) -> dict[str, Any]:
        """The arguments of ``Writer.upsert`` for record ``i``."""
        topic = TOPICS[i % len(TOPICS)]
        vector = self.centers[topic] + 0.3 * self.rng.normal(size=DIM).astype(np.float32)
        id_ = self.id(collection, i)
        self.metadata[(collection, id_)] = {"topic": topic, "year": 2015 + i % 10}
        return {
            "id": id_,
            "embedding": vector,
            "document": f"{collection[:-1]} {i} about {topic}",
            "metadata": self.metadata[(collection, id_)],
            "collection": collection,
        }

    @staticmethod
    def id(collection: str, i: int) -> str:
        return f"{collection[:-1]}-{i:05d}"


def _write_everything(
    console: Console, clients: Clients, settings: Settings, data: SampleData
) -> tuple[int, bool]:
    """Write through the Writer; returns the messages the stream will carry and whether the
    writer refused exactly the late updates of deleted records."""
    pick = random.Random(11)
    refused: list[WriteFailure] = []
    late: set[tuple[str, str]] = set()
    n = data.per_collection
    writer = Writer(settings.source_table_name, client=clients.dynamodb, on_failure=refused.append)
    with writer, _progress(console) as progress:
        task = progress.add_task("writing records", total=n * len(COLLECTIONS))
        for collection in COLLECTIONS:
            for i in range(n):
                writer.upsert(**data.record(collection, i))
                progress.advance(task)
        writer.flush()
        wave = progress.add_task("updates and deletes", total=None)
        for collection in COLLECTIONS:
            ids = [data.id(collection, i) for i in range(n)]
            for id_ in pick.sample(ids, n // 5):  # metadata changes, full state: the new image
                metadata = data.metadata[(collection, id_)] | {
                    "reviewed": True,
                    "score": pick.randint(1, 5),
                }
                writer.update(id_, metadata=metadata, collection=collection)
                progress.advance(wave)
            deleted = pick.sample(ids, n // 10)
            for id_ in deleted:
                writer.delete(id_, collection=collection)
                progress.advance(wave)
            # Late label updates for deleted records: they must not bring them back.
            for id_ in deleted[: max(1, len(deleted) // 5)]:
                writer.update(id_, metadata={"label": "late"}, collection=collection)
                late.add((collection, id_))
                progress.advance(wave)
        progress.update(wave, total=progress.tasks[wave].completed)
    stats = writer.stats()
    console.print(
        f"writer: {stats.written} written, {stats.failed} refused (late updates of deleted "
        f"records: no such record), {stats.retried} retried, "
        f"mean latency {stats.mean_latency_ms:.1f} ms"
    )
    as_expected = {(f.write.collection, f.write.id) for f in refused} == late and all(
        f.reason == "update failed: no such record" for f in refused
    )
    # One stream record per written put, update and delete (a delete's stub is skipped).
    return stats.written, as_expected


def _wait_for_compaction(console: Console, tally: Tally, writes: int) -> bool:
    deadline = time.monotonic() + _TIMEOUT_S
    with _progress(console) as progress:
        task = progress.add_task("forwarding and compacting", total=writes)
        while tally.settled < writes and time.monotonic() < deadline:
            progress.update(task, completed=tally.settled)
            time.sleep(0.2)
        progress.update(task, completed=tally.settled)
    if tally.settled < writes:
        console.print(
            f"[red]only {tally.settled} of {writes} messages compacted in {_TIMEOUT_S}s[/]"
        )
        return False
    return True


def _summary(
    console: Console, clients: Clients, settings: Settings, tally: Tally, elapsed: float
) -> None:
    from chroma_compactor.pointer import PointerTable

    pointers = PointerTable(clients.dynamodb, settings.control_table_name)
    table = Table(title="What the pipeline did")
    for column in (
        "collection",
        "records",
        "versions",
        "messages",
        "msgs/s",
        "applied",
        "coalesced",
        "stale",
        "not found",
        "failed",
    ):
        table.add_column(column, justify="left" if column == "collection" else "right")
    for collection in COLLECTIONS:
        pointer = pointers.read(collection)
        c = tally.counts[collection]
        messages = tally.messages[collection]
        table.add_row(
            collection,
            str(pointer.record_count),
            str(pointer.version),
            str(messages),
            f"{messages / elapsed:.0f}",
            str(c["applied"]),
            str(c["coalesced"]),
            str(c["stale"]),
            str(c["not_found"]),
            str(c["failed"]),
        )
    console.print(table)
    console.print(
        f"{tally.cycles} compaction cycles ({tally.abandoned} abandoned) in {elapsed:.1f}s end to end"
    )


def _check(console: Console, clients: Clients, settings: Settings, data: SampleData) -> bool:
    """Query a snapshot, then compare every snapshot with the table, record by record."""
    from chroma_compactor.wiring import build_reader

    reader = build_reader(settings, clients)
    _sample_query(console, reader, data)
    ok = True
    for collection in COLLECTIONS:
        table_records = _table_records(clients, settings, collection)
        with reader.open(collection) as col:
            got = col.get(include=["embeddings", "documents", "metadatas"])
            snapshot = {
                id_: (
                    np.asarray(got["embeddings"][i], dtype="<f4"),
                    got["documents"][i],
                    got["metadatas"][i],
                )
                for i, id_ in enumerate(got["ids"])
            }
        same = snapshot.keys() == table_records.keys() and all(
            np.allclose(snapshot[i][0], vector, rtol=EMBEDDING_RTOL, atol=EMBEDDING_ATOL)
            and snapshot[i][1:] == (doc, meta)
            for i, (vector, doc, meta) in table_records.items()
        )
        ok = ok and same
        verdict = "[green]equals the table[/]" if same else "[red]differs from the table[/]"
        console.print(f"{collection}: snapshot of {len(snapshot)} records {verdict}")
    return ok


def _sample_query(console: Console, reader: Any, data: SampleData) -> None:
    from chroma_compactor.query import query

    probe = data.centers["serverless"].tolist()
    hits = query(reader, COLLECTIONS[0], vector=probe, k=3, where={"topic": "serverless"})
    table = Table(
        title=f'query {COLLECTIONS[0]}: nearest to the "serverless" centre, topic = serverless'
    )
    for column in ("id", "distance", "document", "metadata"):
        table.add_column(column)
    for hit in hits:
        table.add_row(hit.id, f"{hit.distance:.3f}", hit.document or "", str(hit.metadata))
    console.print(table)


def _table_records(clients: Clients, settings: Settings, collection: str) -> dict[str, Any]:
    """Records with an embedding; a late update of a deleted id leaves only a label stub."""
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    out: dict[str, Any] = {}
    pages = clients.dynamodb.get_paginator("query").paginate(
        TableName=settings.source_table_name,
        KeyConditionExpression="#c = :c",
        ExpressionAttributeNames={"#c": "collection"},
        ExpressionAttributeValues={":c": {"S": collection}},
    )
    for page in pages:
        for raw in page["Items"]:
            if "embedding" not in raw:
                continue
            item = {k: des.deserialize(v) for k, v in raw.items()}
            meta = {k: _plain(v) for k, v in (item.get("metadata") or {}).items()} or None
            vector = np.frombuffer(bytes(item["embedding"].value), dtype="<f4")
            out[item["id"]] = (vector, item.get("document"), meta)
    return out


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
