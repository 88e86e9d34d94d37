"""Run the configurations side by side and write docs/performance.{md,json,png}.

Each queue configuration gets a fresh local stack (`local up --no-workers` in a subprocess, so
moto's memory is not counted) and its own runner process; the limit needs neither.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chroma_compactor.bench.runner import STACK_PID, Config

# Published prices, us-east-1, x86 (see docs/performance.md).
LAMBDA_GB_S_USD = 0.0000166667
LAMBDA_REQUEST_USD = 0.20 / 1e6
S3_PUT_USD = 0.005 / 1000
S3_GET_USD = 0.0004 / 1000
SQS_STANDARD_USD = 0.40 / 1e6
SQS_FIFO_USD = 0.50 / 1e6
QUEUES = {"seed": "fifo", "ours_standard": "standard", "ours_fifo": "fifo"}


@dataclass(frozen=True)
class Plan:
    updates: int = 10_000
    seed_updates: int = 300
    fifo_updates: int = 300  # one FIFO group yields 10 messages per cycle: a rate, not a total
    base_records: int = 10_000
    dim: int = 384
    latency_ms: float = 25.0
    bandwidth_mbps: float = 90.0
    api_latency_ms: float = 10.0
    chunk_bytes: int = 1 << 20
    lambda_memory_mb: int = 2048  # ours, as Pulumi deploys it
    shard_counts: tuple[int, ...] = (1, 2, 4)
    shard_fifo_updates: int = 300  # FIFO's 10 per cycle again: a rate
    queries: int = 200  # warm, k=10, after the 1- and 4-shard standard runs
    cold_queries: int = 15
    writer_records: int = 2_000  # through the Writer, then forwarded and compacted
    seed_memory_mb: int = 4096  # reference/002

    def config(
        self,
        name: str,
        updates: int,
        fixtures: Path,
        records: int = 0,
        dim: int = 0,
        cycle_batch: int = 0,
        **parallel: int,
    ) -> Config:
        return Config(
            **parallel,
            cycle_batch=cycle_batch,
            name=name,
            base_records=records or self.base_records,
            updates=updates,
            dim=dim or self.dim,
            fixtures=str(fixtures),
            latency_ms=self.latency_ms,
            bandwidth_mbps=self.bandwidth_mbps,
            api_latency_ms=self.api_latency_ms,
            chunk_bytes=self.chunk_bytes,
        )


def run(plan: Plan, fixtures: Path, progress: Any = print) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    for name in ("seed", "ours_standard", "ours_fifo", "limit"):
        updates = {"seed": plan.seed_updates, "ours_fifo": plan.fifo_updates}.get(
            name, plan.updates
        )
        config = plan.config(name, updates, fixtures)
        progress(f"{name}: {updates} updates on {plan.base_records} x {plan.dim} ...")
        results[name] = run_config(config, QUEUES.get(name))
        progress(
            f"  {results[name]['msgs_per_s']} msg/s, peak RSS {results[name]['peak_rss_mb']:.0f} MB"
        )
    return (
        summarize(plan, results)
        | run_shards(plan, fixtures, progress)
        | run_writer(plan, fixtures, progress)
    )


def run_writer(plan: Plan, fixtures: Path, progress: Any = print) -> dict[str, Any]:
    """The write path through the Writer, in both its modes, then through the pipeline."""
    progress(f"writer: {plan.writer_records} records per mode, then forwarded and compacted ...")
    writer = run_config(plan.config("writer", plan.writer_records, fixtures), "standard")
    for mode, w in writer.items():
        progress(f"  {mode}: {w['writes_per_s']} writes/s, end to end {w['end_to_end_s']} s")
    return {"writer": writer}


def run_shards(plan: Plan, fixtures: Path, progress: Any = print) -> dict[str, Any]:
    """The shards column: the same updates split 1, 2, 4 ways, one compactor per shard at once.

    On the standard queue it is the whole workload; on FIFO a rate again (10 per cycle per
    group). After the 1- and at most 4-shard standard runs, query latency at base_records.
    """
    runs: dict[str, dict[str, Any]] = {"standard": {}, "fifo": {}}
    queries: dict[str, Any] = {}
    for queue, updates in (("standard", plan.updates), ("fifo", plan.shard_fifo_updates)):
        for n in plan.shard_counts:
            ask = queue == "standard" and n in (1, max(plan.shard_counts))
            config = plan.config(
                f"shards_{queue}",
                updates,
                fixtures,
                shards=n,
                queries=plan.queries if ask else 0,
                cold_queries=plan.cold_queries if ask else 0,
            )
            progress(f"{n} shard(s), {queue} queue: {updates} updates, {n} compactors ...")
            r = run_config(config, queue)
            if "query" in r:
                queries[str(n)] = r.pop("query")
            runs[queue][str(n)] = r
            progress(f"  {r['msgs_per_s']} msg/s, {r['abandoned_cycles']} cycles abandoned")
    for by_n in runs.values():
        one = by_n[str(plan.shard_counts[0])]["msgs_per_s"]
        for r in by_n.values():
            r["speedup"] = round(r["msgs_per_s"] / one, 2)
    return {"shards": {"cpus": os.cpu_count(), **runs}, "query": queries}


def run_scale_queries(plan: Plan, fixtures: Path, progress: Any = print) -> dict[str, Any]:
    """Query latency at 100K x 384 on 1 and 4 shards (no updates: the base as published)."""
    queries: dict[str, Any] = {}
    for n in (1, 4):
        progress(f"queries: 100,000 x 384 on {n} shard(s) ...")
        config = plan.config(
            "query",
            0,
            fixtures,
            100_000,
            384,
            shards=n,
            queries=plan.queries,
            cold_queries=10,
        )
        queries[str(n)] = run_config(config, "standard")["query"]
        progress(f"  {queries[str(n)]}")
    return {"query_scale": queries}


def run_config(config: Config, queue_type: str | None) -> dict[str, Any]:
    """One runner process, against a fresh local stack when it needs queues."""
    env = dict(os.environ)
    stack = None
    data = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    try:
        if queue_type is not None:
            stack, stack_env = _start_stack(data, queue_type)
            env |= stack_env | {STACK_PID: str(stack.pid)}
        out = subprocess.run(
            [sys.executable, "-m", "chroma_compactor.bench.runner", json.dumps(asdict(config))],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{config.name} failed:\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        if stack is not None:
            stack.kill()  # no state to save: SIGTERM would write the whole bucket to disk
            stack.wait()
        shutil.rmtree(data, ignore_errors=True)


def _start_stack(data: Path, queue_type: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    cli = [sys.executable, "-m", "chroma_compactor"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [*cli, "local", "up", "--no-workers", "--port", "0", "--data-dir", str(data),
         "--queue-type", queue_type],
        env=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (data / "stack.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the local stack did not start")
        time.sleep(0.2)
    lines = subprocess.run(
        [*cli, "local", "env", "--data-dir", str(data)],
        env=base,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    env = {}
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return process, env


def summarize(plan: Plan, r: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rate = {name: r[name]["msgs_per_s"] for name in r}
    return {
        "plan": asdict(plan) | {"shard_counts": list(plan.shard_counts)},  # as JSON reads it
        "network_model": {
            "s3_latency_ms": plan.latency_ms,
            "s3_bandwidth_mbps": plan.bandwidth_mbps,
            "s3_bandwidth_shared": True,
            "sqs_dynamodb_latency_ms": plan.api_latency_ms,
        },
        "msgs_per_s": rate,
        "ratio_vs_seed": round(rate["ours_standard"] / rate["seed"], 1),
        "ratio_vs_limit": round(rate["ours_standard"] / rate["limit"], 3),
        "cost_per_10k_updates_usd": {
            name: round(_cost(plan, name, r[name]), 4)
            for name in ("seed", "ours_standard", "ours_fifo")
        },
        "results": r,
    }


def _cost(plan: Plan, name: str, r: dict[str, Any]) -> float:
    """Lambda GB-seconds + invocations + S3 requests + SQS requests, scaled to 10,000 updates."""
    scale = 10_000 / r["updates"]
    memory_gb = (plan.seed_memory_mb if name == "seed" else plan.lambda_memory_mb) / 1024
    cycles = r["cycles"] * scale
    lambda_usd = r["seconds"] * scale * memory_gb * LAMBDA_GB_S_USD + cycles * LAMBDA_REQUEST_USD
    puts = r["s3_puts_per_cycle"] * cycles
    gets = (r["s3_requests_per_cycle"] - r["s3_puts_per_cycle"]) * cycles
    s3_usd = puts * S3_PUT_USD + gets * S3_GET_USD
    sqs_price = SQS_FIFO_USD if QUEUES[name] == "fifo" else SQS_STANDARD_USD
    sqs_usd = 10_000 / 10 * 3 * sqs_price  # send, receive, delete; 10 messages per request
    return float(lambda_usd + s3_usd + sqs_usd)


SCALE_SIZES = ((10_000, 384), (50_000, 384), (100_000, 384), (100_000, 1536))
SCALE_RUNS = (  # name, queue, updates, per cycle (0: greedy), only at this dimension
    ("ours_standard", "standard", 1000, 100, None),  # ten cycles: one has Chroma's HNSW flush
    ("seed", "fifo", 100, 10, 384),
    ("seed", "fifo", 30, 10, 1536),  # the reference's own scale (~70K x 1536): 20 s a cycle
    ("ours_greedy", "standard", 2000, 0, 1536),  # ours at that scale, as deployed
)


CHROMA_SYNC_THRESHOLD = 1000  # hnsw:sync_threshold, Chroma's default: writes between flushes


def expected_upload(r: dict[str, Any], per_cycle: int = 100) -> int:
    """Bytes up per cycle in the long run: a plain cycle, plus a share of the index flush.

    Whether a short run contains Chroma's flush (every 1,000 writes) depends on where the base
    left its counter, so the mean of ten cycles is luck. A flush rewrites the whole index (see
    docs/traits.md), so a cycle's expected share is the index's size times 100 / 1,000; the
    plain cycle is the median of the measured ones.
    """
    sizes: list[int] = sorted(r["upload_bytes"])
    plain = sizes[len(sizes) // 2] if sizes else 0
    index: int = r["index_bytes"]
    return round(plain + index * per_cycle / CHROMA_SYNC_THRESHOLD)


def run_scale(plan: Plan, fixtures: Path, progress: Any = print) -> dict[str, Any]:
    """Fixed batches on growing collections, ours (100 per cycle) vs the seed mode (10).

    Ten cycles of ours, so the cycle in which Chroma flushes its HNSW index (every 1,000
    writes) is counted: one cycle alone could miss it or hit it by chance.
    """
    rows = []
    for records, dim in SCALE_SIZES:
        row: dict[str, Any] = {"records": records, "dim": dim, "seed_cycle_s": None}
        for name, queue, updates, batch, only_dim in SCALE_RUNS:
            if only_dim not in (None, dim):
                continue
            progress(
                f"{name}: {updates} updates, {batch or 'greedy'} per cycle, {records:,} x {dim}"
            )
            config = plan.config(
                name.replace("_greedy", "_standard"), updates, fixtures, records, dim, batch
            )
            r = run_config(config, queue)
            cycle_s = round(r["seconds"] / max(1, r["cycles"]), 3)
            if name == "seed":
                row |= {"seed_cycle_s": cycle_s, "seed_msgs_per_s": r["msgs_per_s"]}
            elif name == "ours_greedy":
                row |= {
                    "ours_greedy_msgs_per_s": r["msgs_per_s"],
                    "ours_greedy_phases_ms": r["phases_ms"],
                }
            else:
                row |= {
                    "ours_cycle_s": cycle_s,
                    "snapshot_bytes": r["snapshot_bytes"],
                    "ours_bytes_up": r["s3_bytes_up_per_cycle"],
                    "ours_bytes_up_max": r["s3_bytes_up_max"],
                    "ours_bytes_up_expected": expected_upload(r),
                    "index_bytes": r["index_bytes"],
                    "ours_peak_rss_mb": r["peak_rss_mb"],
                    "ours_phases_ms": r["phases_ms"],
                }
            progress(f"  {cycle_s} s per cycle, {r['msgs_per_s']} msg/s, {r['peak_rss_mb']:.0f} MB")
        rows.append(row)
    by = {(r["records"], r["dim"]): r for r in rows}
    small, large = by[(10_000, 384)], by[(100_000, 384)]
    return {
        "scale": {"rows": rows, "chunk_bytes": plan.chunk_bytes},
        "cycle_growth_100k_vs_10k": round(large["ours_cycle_s"] / small["ours_cycle_s"], 2),
        "seed_cycle_growth_100k_vs_10k": round(large["seed_cycle_s"] / small["seed_cycle_s"], 2),
        "upload_fraction_100k": round(large["ours_bytes_up_expected"] / large["snapshot_bytes"], 4),
        "upload_fraction_100k_measured_mean": round(
            large["ours_bytes_up"] / large["snapshot_bytes"], 4
        ),
        "peak_rss_mb_100k_1536": by[(100_000, 1536)]["ours_peak_rss_mb"],
    } | run_scale_queries(plan, fixtures, progress)
