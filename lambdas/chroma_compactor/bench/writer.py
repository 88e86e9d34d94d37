"""The write path as a user service drives it: the Writer into the table, then the pipeline.

Each Writer mode writes the same records into its own collection of the local stack's source
table (DynamoDB requests pay the modelled API latency); then the stream is forwarded and the
queue compacted until every record is in a snapshot. Reported: the Writer's writes/s and
latency, and the end-to-end seconds from the first write to the last record published.
"""

from __future__ import annotations

import tempfile
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from chroma_compactor.bench.network import RequestLatency
from chroma_compactor.bench.runner import settings_for
from chroma_compactor.cycle import run_cycle
from chroma_compactor.queue import WorkQueue
from chroma_compactor.settings import Settings
from chroma_compactor.stream_checkpoint import forward_once
from chroma_compactor.wiring import Clients, build_compactor
from chroma_compactor.writer import Mode, Writer

if TYPE_CHECKING:
    from chroma_compactor.bench.runner import Config

MODES: tuple[Mode, ...] = ("batch", "conditional")
_GIVE_UP_S = 600.0


def run_writer(config: Config) -> dict[str, Any]:
    clients = Clients.create()
    settings = settings_for(
        config, Settings.from_env(), tempfile.mkdtemp(prefix="bench-writer-") + "/cache"
    )
    RequestLatency(config.api_latency_ms / 1000).attach(clients.dynamodb)
    rng = np.random.default_rng(7)
    vectors = rng.random((config.updates, config.dim), dtype=np.float32)
    return {mode: _run_mode(config, settings, clients, mode, vectors) for mode in MODES}


def _run_mode(
    config: Config, settings: Settings, clients: Clients, mode: Mode, vectors: Any
) -> dict[str, Any]:
    collection = f"bench-writer-{mode}"
    assert settings.source_table_name
    writer = Writer(settings.source_table_name, collection, client=clients.dynamodb, mode=mode)
    start = time.perf_counter()
    for i, vector in enumerate(vectors):
        writer.upsert(f"w{i}", vector, document=f"record {i}", metadata={"i": i})
    writer.close()
    written_s = time.perf_counter() - start
    stats = writer.stats()
    compactor = build_compactor(settings, clients)
    url = settings.queue_url_for(collection)
    queue = WorkQueue(compactor.sqs, url)
    published = 0
    while published < config.updates:
        if time.perf_counter() - start > _GIVE_UP_S:
            raise RuntimeError(f"{collection}: {published} of {config.updates} published")
        forward_once(clients, settings)
        event = queue.fetch_more(settings.batch_size, 0.2, 900)
        if event:
            run_cycle(compactor, event, url, time.monotonic() + 840)
        published = compactor.pointers.read(collection).record_count
    end_to_end = time.perf_counter() - start
    return {
        "records": config.updates,
        "written": stats.written,
        "failed": stats.failed,
        "retried": stats.retried,
        "writes_per_s": round(config.updates / written_s, 1),
        "mean_latency_ms": round(stats.mean_latency_ms, 1),
        "max_latency_ms": round(stats.max_latency_ms, 1),
        "end_to_end_s": round(end_to_end, 2),
    }
