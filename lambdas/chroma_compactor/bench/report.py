"""docs/performance.json (the figures), the tables of docs/performance.md, docs/performance.png."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from chroma_compactor.bench.png import Canvas

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

LABELS = {
    "seed": "seed (FIFO, 10/cycle, whole snapshot)",
    "ours_standard": "ours, standard queue",
    "ours_fifo": "ours, FIFO queue",
    "limit": "limit (PersistentClient, no queue, no S3)",
}
PHASES = ("lease", "download", "fetch", "apply", "validate", "upload", "commit", "delete")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write(summary: dict[str, Any], docs: Path) -> dict[str, Any]:
    """Merge into performance.json (bench and bench-scale fill different keys); regenerate."""
    path = docs / "performance.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded.update(summary)
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    _splice(docs / "performance.md", tables(recorded))
    if "msgs_per_s" in recorded:
        chart(recorded, docs / "performance.png")
    return recorded


def tables(s: dict[str, Any]) -> str:
    if "results" not in s:
        extra = [*query_table(s), ""] if "query_scale" in s else []
        return "\n".join([*extra, *scale_table(s["scale"]), "", *goals(s)])
    r, rate = s["results"], s["msgs_per_s"]
    plan = s["plan"]
    lines = [
        f"Latest `make bench`: {plan['updates']:,} updates ({plan['seed_updates']} for the seed "
        f"and {plan.get('fifo_updates', '-')} for ours on FIFO, whose rates do not depend on "
        f"the count) on a {plan['base_records']:,} x {plan['dim']} "
        f"collection; S3 modelled at {plan['latency_ms']:g} ms per request and "
        f"{plan['bandwidth_mbps']:g} MB/s shared, SQS and DynamoDB at "
        f"{plan.get('api_latency_ms', 0):g} ms per request.",
        "",
        "| configuration | msg/s | seconds | cycles | s3 requests/cycle | MB up/cycle "
        "| MB down/cycle | peak RSS MB | moto CPU s | $ per 10K updates |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("seed", "ours_standard", "ours_fifo", "limit"):
        x = r[name]
        cost = s["cost_per_10k_updates_usd"].get(name)
        lines.append(
            f"| {LABELS[name]} | {rate[name]:,.1f} | {x['seconds']:,.1f} | {x['cycles'] or '-'} | "
            f"{x['s3_requests_per_cycle'] or '-'} | {_mb(x['s3_bytes_up_per_cycle'])} | "
            f"{_mb(x['s3_bytes_down_per_cycle'])} | {x['peak_rss_mb']:.0f} | "
            f"{_num(x.get('stand_in_cpu_s') or None)} | "
            f"{'-' if cost is None else f'{cost:.4f}'} |"
        )
    lines += [
        "",
        f"**ours / seed = {s['ratio_vs_seed']:,}x** (goal ≥ 100x); "
        f"**ours / limit = {s['ratio_vs_limit']:.0%}** (goal ≥ 50%).",
        "",
        "Mean time per cycle, by phase (ms):",
        "",
        "| configuration | " + " | ".join(PHASES) + " |",
        "|---|" + "---:|" * len(PHASES),
    ]
    for name in ("seed", "ours_standard", "ours_fifo"):
        phases = r[name]["phases_ms"]
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(f"{phases.get(p, 0):,.0f}" for p in PHASES) + " |"
        )
    if "shards" in s:
        lines += ["", *shards_table(s["shards"], plan)]
    if "query" in s or "query_scale" in s:
        lines += ["", *query_table(s)]
    if "writer" in s:
        lines += ["", *writer_table(s["writer"], plan)]
    if "scale" in s:
        lines += ["", *scale_table(s["scale"])]
    return "\n".join([*lines, "", *goals(s)])


def shards_table(shards: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    lines = [
        f"Shards (`make bench`): the same updates on the same {plan['base_records']:,} records "
        "split 1, 2 and 4 ways, one compactor process per shard group started together (the "
        "reserved concurrency infra deploys), each with the warm base and its own modelled S3 "
        "link, until the queue is empty. "
        f"**This machine has {shards.get('cpus', '?')} CPU cores**, shared with the local "
        "stack (one moto process serving every request) and other work: speedups above the "
        "core count cannot show here, and Chroma's upsert holds the GIL, so one compactor "
        "is one core at most.",
        "",
        "| queue | shards | updates | msg/s | speedup vs 1 | seconds | cycles (abandoned) "
        "| messages per compactor | moto CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for queue in ("standard", "fifo"):
        for n, r in sorted(shards.get(queue, {}).items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {queue} | {n} | {r['updates']:,} | {r['msgs_per_s']:,.1f} | "
                f"{r['speedup']:.2f}x | {r['seconds']:,.1f} | {r['cycles']} "
                f"({r['abandoned_cycles']}) | "
                f"{' / '.join(str(m) for m in r['messages_per_worker'])} | "
                f"{_num(r.get('stand_in_cpu_s'))} |"
            )
    return lines


def query_table(s: dict[str, Any]) -> list[str]:
    lines = [
        "Query latency, k=10 by vector through `QueryEngine` (S3, SQS and DynamoDB modelled as "
        "above): *warm* is one engine reused (its per-shard caches open; each query still "
        "reads the layout and each shard's pointer), *cold* a new engine on an empty cache "
        "per query (snapshot download over the modelled link and Chroma's index load). "
        "10K figures come with `make bench` (after the shard runs' updates), 100K with "
        "`make bench-scale` (the base as published).",
        "",
        "| records | shards | warm p50 ms | warm p99 ms | cold p50 ms | cold p99 ms "
        "| samples (warm / cold) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key in ("query", "query_scale"):
        for n, q in sorted(s.get(key, {}).items(), key=lambda kv: int(kv[0])):
            warm, cold = q["warm"], q["cold"]
            lines.append(
                f"| {q['records']:,} | {n} | {warm['p50_ms']:,.1f} | {warm['p99_ms']:,.1f} | "
                f"{cold['p50_ms']:,.1f} | {cold['p99_ms']:,.1f} | {warm['n']} / {cold['n']} |"
            )
    return lines


def writer_table(writer: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    lines = [
        "Writing through the `Writer` (`lambdas/chroma_compactor/writer.py`), as a user service "
        f"does: {max(w['records'] for w in writer.values()):,} records of {plan['dim']} "
        "dimensions into the "
        "source table (DynamoDB modelled as above), then the stream forwarded and the queue "
        "compacted until every record is in a snapshot. *latency* is enqueue to written; "
        "every record is enqueued at once, so it includes the wait in the Writer's buffer. "
        "Batch mode writes 25 items per request; conditional mode one conditional request per "
        "record (it refuses older revs and keeps delete stubs).",
        "",
        "| mode | writes/s | mean latency ms | max latency ms | retried | failed "
        "| first write to last record published, s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, w in writer.items():
        lines.append(
            f"| {mode} | {w['writes_per_s']:,.1f} | {w['mean_latency_ms']:,.1f} | "
            f"{w['max_latency_ms']:,.1f} | {w['retried']} | {w['failed']} | "
            f"{w['end_to_end_s']:,.1f} |"
        )
    return lines


GOALS: tuple[tuple[str, str, Callable[[float], bool]], ...] = (  # key, goal, test on figure
    ("ratio_vs_seed", "ours / seed messages per second ≥ 100x", lambda v: v >= 100),
    ("ratio_vs_limit", "ours / limit messages per second ≥ 50%", lambda v: v >= 0.5),
    (
        "cycle_growth_100k_vs_10k",
        "100-update cycle, 100K vs 10K records ≤ 1.5x",
        lambda v: v <= 1.5,
    ),
    (
        "upload_fraction_100k",
        "bytes up per 100-update cycle at 100K ≤ 5% of snapshot",
        lambda v: v <= 0.05,
    ),
    ("peak_rss_mb_100k_1536", "peak RSS of a cycle at 100K x 1536 ≤ 2 GB", lambda v: v <= 2048),
)


def goals(s: dict[str, Any]) -> list[str]:
    """Each goal of issue 7 against its latest figure (scale goals need `make bench-scale`)."""
    lines = ["| goal | figure | met |", "|---|---:|---|"]
    for key, text, met in GOALS:
        value = s.get(key)
        shown = "not measured" if value is None else f"{value:g}"
        verdict = "-" if value is None else ("yes" if met(value) else "**no**")
        lines.append(f"| {text} | {shown} | {verdict} |")
    return lines


def scale_table(scale: dict[str, Any]) -> list[str]:
    lines = [
        "Scaling (`make bench-scale`): ours runs ten cycles of 100 updates, the seed cycles of its "
        "10; means per cycle. The last columns are messages per second: the seed's, and ours "
        "as deployed (greedy, one cycle of 2,000). MB up *expected* is the median plain cycle "
        "plus a tenth of the HNSW index, which Chroma rewrites every 1,000 writes: ten cycles "
        "may or may not contain that flush.",
        "",
        "| records x dim | snapshot MB | ours cycle s | ours MB up (mean / max / expected) "
        "| seed cycle s "
        "| peak RSS MB (ours) | seed msg/s | ours msg/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in scale["rows"]:
        lines.append(
            f"| {row['records']:,} x {row['dim']} | {_mb(row['snapshot_bytes'])} | "
            f"{row['ours_cycle_s']:.2f} | {_mb(row['ours_bytes_up'])} / "
            f"{_mb(row.get('ours_bytes_up_max'))} / {_mb(row.get('ours_bytes_up_expected'))} | "
            f"{_num(row['seed_cycle_s'])} | "
            f"{row['ours_peak_rss_mb']:.0f} | {_num(row.get('seed_msgs_per_s'))} | "
            f"{_num(row.get('ours_greedy_msgs_per_s'))} |"
        )
    lines += [
        "",
        "Ours, mean time per cycle by phase (ms):",
        "",
        "| records x dim | " + " | ".join(PHASES) + " | retention |",
        "|---|" + "---:|" * (len(PHASES) + 1),
    ]
    for row in scale["rows"]:
        phases = row["ours_phases_ms"]
        lines.append(
            f"| {row['records']:,} x {row['dim']} | "
            + " | ".join(f"{phases.get(p, 0):,.0f}" for p in (*PHASES, "retention"))
            + " |"
        )
    return lines


def _num(n: float | None) -> str:
    return "-" if n is None else f"{n:,.2f}"


def _mb(n: float | None) -> str:
    return "-" if not n else f"{n / 1e6:,.2f}"


def _splice(path: Path, body: str) -> None:
    """Replace the generated part of the doc, keeping the hand-written method around it."""
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


def chart(s: dict[str, Any], out: Path) -> None:
    """Messages per second of each configuration, on a log scale."""
    rates = s["msgs_per_s"]
    names = ["seed", "ours_fifo", "ours_standard", "limit"]
    colours = {
        "seed": (176, 65, 62),
        "ours_fifo": (224, 160, 48),
        "ours_standard": (47, 125, 50),
        "limit": (85, 85, 85),
    }
    width, left, bar_h, gap = 1000, 520, 40, 24
    canvas = Canvas(width, 60 + len(names) * (bar_h + gap))
    canvas.text(20, 16, "Messages per second (log scale), same data and machine")
    top = max(math.log10(max(rates.values())), 1) + 0.3
    for i, name in enumerate(names):
        y = 56 + i * (bar_h + gap)
        span = int((width - left - 130) * max(math.log10(max(rates[name], 1.0)) + 0.3, 0.05) / top)
        canvas.rect(left, y, left + span, y + bar_h, colours[name])
        canvas.text(20, y + 13, LABELS[name])
        canvas.text(left + span + 10, y + 13, f"{rates[name]:,.1f}")
    canvas.save(out)
