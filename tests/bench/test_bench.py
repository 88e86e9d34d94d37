"""The benchmark's own parts: the S3 network model charges what it says, and a tiny run reports."""

from __future__ import annotations

import json
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from chroma_compactor.bench import report, suite
from chroma_compactor.bench.network import NetworkModel, RequestLatency, S3Traffic
from chroma_compactor.bench.png import Canvas

if TYPE_CHECKING:
    from pathlib import Path

    from support import Pipeline


def test_the_network_model_counts_and_charges_every_s3_request(pipeline: Pipeline) -> None:
    s3 = pipeline.clients.s3
    traffic = S3Traffic(NetworkModel(latency_s=0.05, bandwidth_bytes_per_s=1e6))
    traffic.attach(s3)
    body = b"x" * 100_000

    start = time.perf_counter()
    s3.put_object(Bucket=pipeline.names.bucket, Key="k", Body=body)
    s3.get_object(Bucket=pipeline.names.bucket, Key="k")["Body"].read()
    elapsed = time.perf_counter() - start

    requests, puts, up, down = traffic.snapshot()
    assert (requests, puts) == (2, 1)
    assert up >= 100_000 and down >= 100_000
    # two first bytes (0.1 s) + 200 KB at 1 MB/s (0.2 s)
    assert traffic.slept_s == pytest.approx(0.3, rel=0.05)
    assert elapsed >= 0.3


def test_concurrent_s3_transfers_share_the_modelled_bandwidth(pipeline: Pipeline) -> None:
    s3 = pipeline.clients.s3
    traffic = S3Traffic(NetworkModel(latency_s=0.0, bandwidth_bytes_per_s=1e6))
    traffic.attach(s3)
    body = b"x" * 100_000

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=pipeline.names.bucket, Key=f"k{i}", Body=body),
                range(4),
            )
        )
    elapsed = time.perf_counter() - start

    assert elapsed >= 0.4  # 400 KB through one 1 MB/s link, not four


def test_sqs_and_dynamodb_requests_pay_a_latency_each(pipeline: Pipeline) -> None:
    latency = RequestLatency(0.05)
    latency.attach(pipeline.clients.sqs)
    latency.attach(pipeline.clients.dynamodb)

    start = time.perf_counter()
    pipeline.clients.sqs.get_queue_attributes(QueueUrl=pipeline.created.queue_url)
    pipeline.clients.dynamodb.describe_table(TableName=pipeline.names.control_table)
    elapsed = time.perf_counter() - start

    assert latency.requests == 2
    assert elapsed >= 0.1


@pytest.mark.e2e
def test_a_tiny_bench_reports_every_figure_the_docs_need(tmp_path: Path) -> None:
    plan = suite.Plan(
        updates=40,
        seed_updates=20,
        fifo_updates=20,
        base_records=200,
        dim=16,
        shard_counts=(1, 2),
        shard_fifo_updates=20,
        queries=5,
        cold_queries=2,
        writer_records=30,
    )

    summary = suite.run(plan, tmp_path / "fixtures", progress=lambda _: None)
    recorded = report.write(summary, tmp_path)

    assert set(recorded["msgs_per_s"]) == {"seed", "ours_standard", "ours_fifo", "limit"}
    assert all(rate > 0 for rate in recorded["msgs_per_s"].values())
    assert {"ratio_vs_seed", "ratio_vs_limit", "cost_per_10k_updates_usd", "network_model"} <= set(
        recorded
    )
    seed, ours = recorded["results"]["seed"], recorded["results"]["ours_standard"]
    assert seed["cycles"] == 2  # 20 updates, 10 per cycle
    assert ours["cycles"] == 1  # greedy fetch took all 40 in one cycle
    # The seed downloads its whole snapshot every cycle; ours reads manifests, reuses its copy.
    assert ours["s3_bytes_down_per_cycle"] < seed["s3_bytes_down_per_cycle"] / 10
    # Every update compacted once whatever the split, and queries answered warm and cold.
    for queue in ("standard", "fifo"):
        for n in ("1", "2"):
            run = recorded["shards"][queue][n]
            assert sum(run["messages_per_worker"]) == run["updates"]
            assert len(run["messages_per_worker"]) == int(n)
    assert set(recorded["query"]) == {"1", "2"}
    assert all(q["warm"]["n"] == 5 and q["cold"]["n"] == 2 for q in recorded["query"].values())
    # Written through the Writer in both modes, every record then published by the pipeline.
    assert set(recorded["writer"]) == {"batch", "conditional"}
    assert all(w["written"] == 30 and w["failed"] == 0 for w in recorded["writer"].values())
    assert json.loads((tmp_path / "performance.json").read_text()) == recorded
    assert "<!-- bench:begin -->" in (tmp_path / "performance.md").read_text()
    assert (tmp_path / "performance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_stdlib_png_holds_what_was_drawn(tmp_path: Path) -> None:
    canvas = Canvas(40, 20)
    canvas.rect(10, 5, 30, 15, (200, 10, 20))
    canvas.save(tmp_path / "c.png")

    data = (tmp_path / "c.png").read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    idat_len = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    rows = zlib.decompress(data[41 : 41 + idat_len])
    pixel = lambda x, y: tuple(rows[y * (1 + 3 * width) + 1 + 3 * x :][:3])  # noqa: E731
    assert (width, height) == (40, 20)
    assert pixel(20, 10) == (200, 10, 20)
    assert pixel(2, 2) == (255, 255, 255)
