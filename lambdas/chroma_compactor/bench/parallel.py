"""Shards compacted in parallel, and query latency over the result (runner configs with shards).

Each compactor is its own process, as each concurrent Lambda invocation is its own container:
its own cache (a copy of the warm base, like ``ours_standard``), its own modelled S3 link, no
GIL shared with the others. They start together and each drives cycles the way the event
source mapping would until the queue holds nothing, visible or in flight. What they contend
for is real: the local stack (one moto process), the machine's cores, and, on a standard
queue, the shards' leases (any invocation may receive any shard's messages).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chroma_compactor import ops
from chroma_compactor.bench.network import NetworkModel, RequestLatency, S3Traffic
from chroma_compactor.bench.runner import (
    _BUILD_BATCH,
    COLLECTION,
    Config,
    _base,
    _publish_copy,
    _send,
    _stack_cpu_s,
    save_fixture,
    updates,
)
from chroma_compactor.cycle import publish_operations, run_cycle
from chroma_compactor.query import QueryEngine
from chroma_compactor.queue import WorkQueue
from chroma_compactor.settings import QueueType, Settings
from chroma_compactor.snapshot_cache import SnapshotCache
from chroma_compactor.wiring import Clients, build_compactor, build_reader

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from chroma_compactor.cycle import Compactor
    from chroma_compactor.shards import Layout

_QUERY_K = 10


def settings_for(config: Config, base: Settings, cache_dir: str) -> Settings:
    """As deployed (greedy fetch, lease wait), with the collection split ``config.shards`` ways."""
    return base.model_copy(
        update={
            "cache_dir": cache_dir,
            "chunk_bytes": config.chunk_bytes,
            "retain_versions": 3,
            "collection_shards": {COLLECTION: config.shards},
        }
    )


def run_shards(config: Config) -> dict[str, Any]:
    clients = Clients.create()
    work = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    settings = settings_for(config, Settings.from_env(), str(work / "base"))
    compactor = build_compactor(settings, clients)
    layout = compactor.layouts.ensure(COLLECTION, config.shards)
    _place_partitions(config, compactor, layout)
    result: dict[str, Any] = {
        "name": config.name,
        "shards": config.shards,
        "queue": settings.queue_type.value,
        "updates": config.updates,
    }
    if config.updates:
        url = settings.queue_url_for(COLLECTION)
        _send_sharded(clients, url, updates(config), settings.queue_type, layout)
        result |= _compact_in_parallel(config, work)
    if config.queries:
        result["query"] = query_latency(config, settings, work)
    shutil.rmtree(work, ignore_errors=True)
    return result


# -- the base, one snapshot per partition ----------------------------------------------------


def _place_partitions(config: Config, compactor: Compactor, layout: Layout) -> None:
    """Each partition's share of the base as its version 1, from the fixture cache (built once)."""
    if layout.shards == 1:
        root = Path(config.fixtures) / f"{config.base_records}x{config.dim}"
        fixtures = {COLLECTION: root}
    else:
        root = Path(config.fixtures) / f"{config.base_records}x{config.dim}-{layout.shards}shards"
        fixtures = {p: root / p for p in layout.partitions}
    if not all((f / "ledger.sqlite3").exists() for f in fixtures.values()):
        _build_partitions(config, compactor, layout, fixtures)
        return
    for partition, fixture in fixtures.items():
        cache = SnapshotCache(Path(compactor.settings.cache_dir), partition)
        shutil.copytree(fixture, cache.snapshot.root, dirs_exist_ok=True)
        _publish_copy(compactor, cache, partition)


def _build_partitions(
    config: Config, compactor: Compactor, layout: Layout, fixtures: dict[str, Path]
) -> None:
    """The same records as the unsharded fixture (same seed, same order), routed by shard."""
    rng = np.random.default_rng(1)
    for start in range(0, config.base_records, _BUILD_BATCH):
        by_partition: dict[str, list[ops.Operation]] = {p: [] for p in layout.partitions}
        for i in range(start, min(start + _BUILD_BATCH, config.base_records)):
            op = _base(config, i, rng)
            by_partition[layout.partition_of(op.id)].append(op)
        for partition, batch in by_partition.items():
            publish_operations(compactor, partition, batch, time.monotonic() + 3600)
    for partition, fixture in fixtures.items():
        save_fixture(SnapshotCache(Path(compactor.settings.cache_dir), partition), fixture)


def _send_sharded(
    clients: Clients, url: str, operations: list[ops.Operation], queue: QueueType, layout: Layout
) -> None:
    """As the forwarder sends: on FIFO one message group per shard, in order within it."""
    if queue is QueueType.STANDARD or layout.shards == 1:
        _send(clients, url, operations, queue)
        return
    for start in range(0, len(operations), 10):
        clients.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": ops.encode(op),
                    "MessageGroupId": layout.group_id(op.id),
                    "MessageDeduplicationId": str(start + i),
                }
                for i, op in enumerate(operations[start : start + 10])
            ],
        )


# -- compaction: one process per concurrent invocation -------------------------------------


def _compact_in_parallel(config: Config, work: Path) -> dict[str, Any]:
    """``shards`` compactor processes, started together; wall time until the queue is empty."""
    context = multiprocessing.get_context("spawn")  # chromadb and threads do not survive fork
    barrier = context.Barrier(config.shards + 1)
    results: Queue[dict[str, Any]] = context.Queue()
    workers = []
    for i in range(config.shards):
        cache = work / f"worker{i}"
        shutil.copytree(work / "base", cache)  # warm, as ours_standard's single compactor is
        workers.append(
            context.Process(
                target=_worker, args=(json.dumps(asdict(config)), str(cache), barrier, results)
            )
        )
    for w in workers:
        w.start()
    barrier.wait(timeout=300)
    stand_in_cpu = _stack_cpu_s()
    start = time.perf_counter()
    per_worker = [results.get(timeout=1800) for _ in workers]
    seconds = time.perf_counter() - start
    stand_in_cpu = _stack_cpu_s() - stand_in_cpu
    for w in workers:
        w.join()
    return {
        "seconds": round(seconds, 3),
        "msgs_per_s": round(config.updates / seconds, 2),
        "cycles": sum(w["cycles"] for w in per_worker),
        "abandoned_cycles": sum(w["abandoned"] for w in per_worker),
        "messages_per_worker": sorted(w["messages"] for w in per_worker),
        "busy_s_per_worker": sorted(w["busy_s"] for w in per_worker),
        "stand_in_cpu_s": round(stand_in_cpu, 2),
    }


def _worker(config_json: str, cache_dir: str, barrier: Barrier, results: Queue[Any]) -> None:
    config = Config(**json.loads(config_json))
    clients = Clients.create()
    settings = settings_for(config, Settings.from_env(), cache_dir)
    compactor = build_compactor(settings, clients)
    S3Traffic(NetworkModel(config.latency_ms / 1000, config.bandwidth_mbps * 1e6)).attach(
        clients.s3
    )
    api = RequestLatency(config.api_latency_ms / 1000)
    api.attach(clients.sqs)
    api.attach(clients.dynamodb)
    url = settings.queue_url_for(COLLECTION)
    queue = WorkQueue(compactor.sqs, url)
    cycles = abandoned = messages = 0
    busy = 0.0
    barrier.wait(timeout=300)
    while True:
        event = queue.fetch_more(settings.batch_size, 0.2, 900)  # the mapping's invocation
        if not event:
            if _drained(clients, url):
                break
            time.sleep(0.1)
            continue
        started = time.perf_counter()
        report = run_cycle(compactor, event, url, time.monotonic() + 840)
        busy += time.perf_counter() - started
        for outcome in report.outcomes:
            cycles += 1
            abandoned += bool(outcome.abandoned)
            messages += 0 if outcome.abandoned else outcome.messages
    results.put({"cycles": cycles, "abandoned": abandoned, "messages": messages, "busy_s": busy})


def _drained(clients: Clients, url: str) -> bool:
    """Nothing visible and nothing in flight: no other compactor holds work that may come back."""
    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())


# -- queries -------------------------------------------------------------------------------


def query_latency(config: Config, settings: Settings, work: Path) -> dict[str, Any]:
    """k=10 nearest neighbours: a warm engine (as a reused Lambda container) and cold ones.

    Cold: a new engine on an empty cache for every query, so each pays the snapshot download
    over the modelled S3 link and Chroma's index load, as a fresh container does.
    """
    clients = Clients.create()
    S3Traffic(NetworkModel(config.latency_ms / 1000, config.bandwidth_mbps * 1e6)).attach(
        clients.s3
    )
    api = RequestLatency(config.api_latency_ms / 1000)
    api.attach(clients.dynamodb)
    reader = build_reader(settings, clients)
    rng = np.random.default_rng(11)
    vectors = [rng.random(config.dim, dtype=np.float32).tolist() for _ in range(config.queries)]

    def timed(engine: QueryEngine, vector: list[float]) -> float:
        start = time.perf_counter()
        hits = engine.query(COLLECTION, vector=vector, k=_QUERY_K)
        elapsed = time.perf_counter() - start
        assert len(hits) == _QUERY_K
        return elapsed * 1000

    warm = QueryEngine(reader, work / "query-warm")
    first = timed(warm, vectors[0])
    warm_ms = [timed(warm, v) for v in vectors]
    warm.close()
    cold_ms = []
    for i, vector in enumerate(vectors[: config.cold_queries]):
        engine = QueryEngine(reader, work / f"query-cold{i}")
        cold_ms.append(timed(engine, vector))
        engine.close()
        shutil.rmtree(work / f"query-cold{i}", ignore_errors=True)
    return {
        "records": config.base_records,
        "k": _QUERY_K,
        "warm": _percentiles(warm_ms),
        "cold": _percentiles(cold_ms),
        "first_query_ms": round(first, 1),
    }


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(pick(0.99), 1),
        "max_ms": round(ordered[-1], 1),
    }
