"""One benchmark configuration, in its own process: ``python -m chroma_compactor.bench.runner JSON``.

The parent (``bench/suite.py``) starts a local stack (moto's server in another process, so this
process's peak RSS is the compactor's alone) and passes its environment. Here: put a base
snapshot of ``base_records`` in place (from a cached fixture when there is one), queue the
updates, then drive compaction cycles the way the event source mapping would until the queue
is empty. Prints one JSON line of figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chroma_compactor import ops
from chroma_compactor.bench.network import NetworkModel, RequestLatency, S3Traffic
from chroma_compactor.cycle import Compactor, publish_operations, run_cycle
from chroma_compactor.local_snapshot import chroma_client, get_collection
from chroma_compactor.queue import WorkQueue
from chroma_compactor.settings import QueueType, Settings, SnapshotTransfer
from chroma_compactor.snapshot_cache import SnapshotCache
from chroma_compactor.wiring import Clients, build_compactor

if TYPE_CHECKING:
    from chroma_compactor.cycle import Outcome

COLLECTION = "bench"
STACK_PID = "BENCH_STACK_PID"  # the local stack's process, whose CPU the run reports
_SEND_THREADS = 8
_BUILD_BATCH = 5000


@dataclass(frozen=True)
class Config:
    name: str  # seed | ours_standard | ours_fifo | limit | writer | shards_* | query
    base_records: int
    updates: int
    dim: int
    fixtures: str  # directory of cached base snapshots
    latency_ms: float = 25.0
    bandwidth_mbps: float = 90.0
    api_latency_ms: float = 10.0  # per SQS and DynamoDB request
    chunk_bytes: int = 1 << 20
    cycle_batch: int = 0  # >0: exactly this many messages per cycle (no greedy fetch)
    shards: int = 0  # >0: split that many ways, one compactor process per shard (parallel.py)
    queries: int = 0  # then: warm query latency over this many queries
    cold_queries: int = 0  # and over this many cold ones


@dataclass
class Result:
    name: str
    updates: int
    seconds: float
    msgs_per_s: float
    cycles: int = 0
    phases_ms: dict[str, float] = field(default_factory=dict)  # mean per cycle
    s3_requests_per_cycle: float = 0.0
    s3_puts_per_cycle: float = 0.0
    s3_bytes_up_per_cycle: float = 0.0
    s3_bytes_up_max: int = 0  # the largest cycle's blobs (Chroma persists HNSW now and then)
    s3_bytes_down_per_cycle: float = 0.0
    api_requests_per_cycle: float = 0.0  # SQS and DynamoDB
    snapshot_bytes: int = 0
    index_bytes: int = 0  # the HNSW segment's files: what a Chroma index flush rewrites
    upload_bytes: list[int] = field(default_factory=list)  # per cycle
    peak_rss_mb: float = 0.0
    stand_in_cpu_s: float = 0.0  # CPU the local stack (moto) spent serving the measured run


def main() -> None:
    config = Config(**json.loads(sys.argv[1]))
    if config.shards:
        from chroma_compactor.bench.parallel import run_shards

        print(json.dumps(run_shards(config)))
        return
    if config.name == "writer":
        from chroma_compactor.bench.writer import run_writer

        print(json.dumps(run_writer(config)))
        return
    result = run_limit(config) if config.name == "limit" else run_queue(config)
    result.peak_rss_mb = round(peak_rss_mb(), 1)
    print(json.dumps(asdict(result)))


def reset_peak_rss() -> None:
    """Start the high-water mark afresh, so building the base does not count (Linux only)."""
    with contextlib.suppress(OSError):  # elsewhere the peak includes the setup
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """The process's peak resident set since the last reset (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def updates(config: Config) -> list[ops.Operation]:
    """The same updates for every configuration: random existing ids, newer revs, new vectors."""
    rng = np.random.default_rng(7)
    ids = rng.integers(0, config.base_records, size=config.updates)
    revs: dict[int, int] = {}
    out = []
    for i in ids.tolist():
        revs[i] = revs.get(i, 1) + 1
        vector = rng.random(config.dim, dtype=np.float32)
        out.append(ops.upsert(COLLECTION, f"r{i}", revs[i], vector, metadata={"rev": revs[i]}))
    return out


def _base(config: Config, i: int, rng: np.random.Generator) -> ops.Operation:
    return ops.upsert(COLLECTION, f"r{i}", 1, rng.random(config.dim, dtype=np.float32))


# -- seed and ours: the compactor, driven like the event source mapping ---------------------


def settings_for(config: Config, base: Settings, cache_dir: str) -> Settings:
    if config.name == "seed":
        # reference/002 + 004: FIFO, 10 per invocation, no greedy fetch, no cache, whole
        # snapshot down and up every cycle.
        mode: dict[str, Any] = {
            "compaction_batch_size": 10,
            "fetch_seconds": 0.0,
            "snapshot_transfer": SnapshotTransfer.WHOLE,
        }
    else:
        mode = {}  # ours: the deployed defaults
    if config.cycle_batch:
        mode |= {
            "compaction_batch_size": config.cycle_batch,
            "compaction_batching_window_seconds": 1 if config.cycle_batch > 10 else 0,
            "fetch_seconds": 0.0,
        }
    return base.model_copy(
        update={
            **mode,
            "cache_dir": cache_dir,
            "chunk_bytes": config.chunk_bytes,
            "lease_wait_seconds": 0.0,
            "retain_versions": 3,
        }
    )


def run_queue(config: Config) -> Result:
    clients = Clients.create()
    traffic = S3Traffic(NetworkModel(config.latency_ms / 1000, config.bandwidth_mbps * 1e6))
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = settings_for(config, Settings.from_env(), str(work / "cache"))
    compactor = build_compactor(settings, clients)
    snapshot_bytes = _place_base(config, compactor)
    index_bytes = _index_bytes(compactor)
    traffic.attach(clients.s3)  # only the measured cycles pay the network model
    url = settings.queue_url_for(COLLECTION)
    _send(clients, url, updates(config), settings.queue_type)
    api = RequestLatency(config.api_latency_ms / 1000)
    api.attach(clients.sqs)
    api.attach(clients.dynamodb)

    outcomes: list[Outcome] = []
    reset_peak_rss()
    before = traffic.snapshot()
    stand_in_cpu = _stack_cpu_s()
    start = time.perf_counter()
    queue = WorkQueue(compactor.sqs, url)
    while True:
        event = queue.fetch_more(settings.batch_size, 0.2, 900)
        if not event:
            break
        report = run_cycle(compactor, event, url, time.monotonic() + 840)
        outcomes += report.outcomes
    seconds = time.perf_counter() - start
    stand_in_cpu = _stack_cpu_s() - stand_in_cpu
    requests, puts, up, down = (a - b for a, b in zip(traffic.snapshot(), before, strict=True))
    shutil.rmtree(work, ignore_errors=True)
    cycles = max(1, len(outcomes))
    return Result(
        name=config.name,
        updates=config.updates,
        seconds=round(seconds, 3),
        msgs_per_s=round(config.updates / seconds, 2),
        cycles=len(outcomes),
        phases_ms=_mean_phases(outcomes),
        s3_requests_per_cycle=round(requests / cycles, 1),
        s3_puts_per_cycle=round(puts / cycles, 1),
        s3_bytes_up_per_cycle=round(up / cycles),
        s3_bytes_up_max=max((o.upload_bytes for o in outcomes), default=0),
        s3_bytes_down_per_cycle=round(down / cycles),
        api_requests_per_cycle=round(api.requests / cycles, 1),
        stand_in_cpu_s=round(stand_in_cpu, 2),
        snapshot_bytes=snapshot_bytes,
        index_bytes=index_bytes,
        upload_bytes=[o.upload_bytes for o in outcomes],
    )


def _place_base(config: Config, compactor: Compactor) -> int:
    """Publish the base snapshot as version 1 (from the fixture cache, built once)."""
    fixture = Path(config.fixtures) / f"{config.base_records}x{config.dim}"
    cache = SnapshotCache(Path(compactor.settings.cache_dir), COLLECTION)
    if not (fixture / "ledger.sqlite3").exists():
        _build_fixture(config, compactor, fixture)
    else:
        shutil.copytree(fixture, cache.snapshot.root, dirs_exist_ok=True)
        _publish_copy(compactor, cache)
    return sum(p.stat().st_size for p in cache.snapshot.root.rglob("*") if p.is_file())


def _index_bytes(compactor: Compactor) -> int:
    """Bytes of the HNSW segment directories (chroma/<segment id>/*)."""
    chroma = SnapshotCache(Path(compactor.settings.cache_dir), COLLECTION).snapshot.chroma_dir
    return sum(p.stat().st_size for p in chroma.glob("*/*") if p.is_file())


def _build_fixture(config: Config, compactor: Compactor, fixture: Path) -> None:
    rng = np.random.default_rng(1)
    for start in range(0, config.base_records, _BUILD_BATCH):
        batch = [
            _base(config, i, rng)
            for i in range(start, min(start + _BUILD_BATCH, config.base_records))
        ]
        publish_operations(compactor, COLLECTION, batch, time.monotonic() + 3600)
    save_fixture(SnapshotCache(Path(compactor.settings.cache_dir), COLLECTION), fixture)


def save_fixture(cache: SnapshotCache, fixture: Path) -> None:
    """Copy a built base into the fixture cache whole or not at all (a rename publishes it)."""
    fixture.parent.mkdir(parents=True, exist_ok=True)
    tmp = fixture.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cache.snapshot.root, tmp)
    tmp.rename(fixture)


def _publish_copy(compactor: Compactor, cache: SnapshotCache, partition: str = COLLECTION) -> None:
    """Commit the copied fixture as the next version, with the cycle's own upload and commit."""
    from chroma_compactor.cycle import Applied, Outcome, commit, upload
    from chroma_compactor.merge import Plan

    lease = compactor.leases.acquire(partition, compactor.owner, 600)
    pointer = compactor.pointers.read(partition)
    with cache.snapshot.open_ledger() as ledger:
        applied = Applied(
            plan=Plan(),
            result=None,
            failures={},
            records=ledger.live_count(),
            tombstones=ledger.tombstone_count(),
            dimension=ledger.dimension,
        )
    manifest = upload(compactor, cache.snapshot, pointer, None, lease, applied, Outcome(partition))
    commit(compactor, lease, pointer, manifest)
    cache.mark_clean(manifest.version)
    compactor.leases.release(lease)


def _send(clients: Clients, url: str, operations: list[ops.Operation], queue: QueueType) -> None:
    def batch(start: int) -> None:
        entries: list[Any] = []
        for i, op in enumerate(operations[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": ops.encode(op)}
            if queue is QueueType.FIFO:
                entry |= {
                    "MessageGroupId": f"compaction:{COLLECTION}",
                    "MessageDeduplicationId": f"{start + i}",
                }
            entries.append(entry)
        clients.sqs.send_message_batch(QueueUrl=url, Entries=entries)

    if queue is QueueType.FIFO:  # one group: order is the send order
        for start in range(0, len(operations), 10):
            batch(start)
        return
    with ThreadPoolExecutor(_SEND_THREADS) as pool:
        list(pool.map(batch, range(0, len(operations), 10)))


def _stack_cpu_s() -> float:
    """User + system CPU seconds of the local stack's process so far (0 if unknown)."""
    try:
        fields = Path(f"/proc/{os.environ[STACK_PID]}/stat").read_text().rsplit(")", 1)[1].split()
    except (KeyError, OSError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mean_phases(outcomes: list[Outcome]) -> dict[str, float]:
    names = sorted({name for o in outcomes for name in o.phases_ms})
    return {
        n: round(sum(o.phases_ms.get(n, 0.0) for o in outcomes) / max(1, len(outcomes)), 1)
        for n in names
    }


# -- the limit: the same final operations, straight into a local PersistentClient -----------


def run_limit(config: Config) -> Result:
    work = Path(tempfile.mkdtemp(prefix="bench-limit-"))
    rng = np.random.default_rng(1)
    with chroma_client(work) as client:
        collection = get_collection(client, COLLECTION, "cosine", create=True)
        batch = client.get_max_batch_size()
        for start in range(0, config.base_records, batch):
            ids = range(start, min(start + batch, config.base_records))
            collection.add(
                ids=[f"r{i}" for i in ids],
                embeddings=np.stack([rng.random(config.dim, dtype=np.float32) for _ in ids]),
            )
        final: dict[str, ops.Operation] = {}
        for op in updates(config):
            final[op.id] = op  # later revs of an id replace earlier ones
        todo = list(final.values())
        reset_peak_rss()
        start_t = time.perf_counter()
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            collection.upsert(
                ids=[op.id for op in chunk],
                embeddings=np.stack([op.vector() for op in chunk]),
                metadatas=[op.metadata for op in chunk],
            )
        seconds = time.perf_counter() - start_t
    shutil.rmtree(work, ignore_errors=True)
    return Result(
        name="limit",
        updates=config.updates,
        seconds=round(seconds, 3),
        msgs_per_s=round(config.updates / seconds, 2),
    )


if __name__ == "__main__":
    main()
