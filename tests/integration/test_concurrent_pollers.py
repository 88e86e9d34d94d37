"""Local mode runs one compactor per shard group, each a container of its own (as in Lambda)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

import enhanced_compaction_handler
import stream_forwarder
from chroma_compactor import ops
from chroma_compactor.pollers import Pollers
from chroma_compactor.shards import Layout
from support import snapshot_state, vector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chroma_compactor.cycle import Compactor
    from support import Pipeline

RECORDS = 40


@pytest.fixture
def split_env(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """The Lambda environment of a pipeline whose collection "split" has 2 shards."""
    pipeline.settings = pipeline.settings.model_copy(update={"collection_shards": {"split": 2}})
    for name, value in pipeline.settings.to_env().items():
        monkeypatch.setenv(name, value)
    enhanced_compaction_handler._compactor.cache_clear()
    enhanced_compaction_handler._queue_url.cache_clear()
    stream_forwarder._setup.cache_clear()
    yield pipeline
    enhanced_compaction_handler._compactor.cache_clear()
    enhanced_compaction_handler._queue_url.cache_clear()
    stream_forwarder._setup.cache_clear()


def _compactor_in_a_new_thread() -> Compactor:
    got: list[Compactor] = []
    thread = threading.Thread(
        target=lambda: got.append(
            enhanced_compaction_handler._compactor(enhanced_compaction_handler._container())
        )
    )
    thread.start()
    thread.join()
    return got[0]


def test_each_calling_thread_gets_its_own_lease_owner_and_working_copies(
    split_env: Pipeline,
) -> None:
    first, second = _compactor_in_a_new_thread(), _compactor_in_a_new_thread()

    assert first.owner != second.owner  # leases are re-entrant for one owner
    assert first.settings.cache_dir != second.settings.cache_dir


def test_concurrent_pollers_compact_every_shard_of_a_collection(split_env: Pipeline) -> None:
    pipeline = split_env
    pipeline.send(
        *(ops.upsert("split", f"id{i}", 1, vector(i), metadata={"i": i}) for i in range(RECORDS))
    )
    pollers = Pollers(pipeline.settings, pipeline.clients)
    reader = pipeline.reader()
    layout = Layout("split", 2)

    pollers.start()
    try:
        deadline = time.monotonic() + 90
        while not all(reader.pointers.read(p).version for p in layout.partitions):
            assert time.monotonic() < deadline, "the shards were not compacted in time"
            time.sleep(0.2)
        while sum(len(snapshot_state(reader, p)) for p in layout.partitions) < RECORDS:
            assert time.monotonic() < deadline, "not every record was compacted in time"
            time.sleep(0.5)
    finally:
        pollers.stop()

    assert pollers.errors == 0
    for partition in layout.partitions:
        assert all(layout.partition_of(i) == partition for i in snapshot_state(reader, partition))
