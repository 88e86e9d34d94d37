"""Warm starts reuse /tmp; cold starts and dirty caches fetch only what they lack; greedy fetch."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from chroma_compactor import local_snapshot, ops
from chroma_compactor.cycle import Hooks, Step
from support import snapshot_state, vector

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.cycle import Outcome
    from chroma_compactor.reader import Reader
    from support import Pipeline


def _commit(
    pipeline: Pipeline, compactor_name: str, ids: range, hooks: Hooks | None = None
) -> Outcome:
    """Send upserts for ``ids`` and drain; the first cycle's outcome."""
    pipeline.send(*(ops.upsert("docs", f"id{i}", 1, vector(i)) for i in ids))
    reports = pipeline.drain(pipeline.compactor(compactor_name, hooks))
    return reports[0].outcomes[0]


def test_a_warm_compactor_downloads_nothing(pipeline: Pipeline) -> None:
    _commit(pipeline, "a", range(50))

    warm = _commit(pipeline, "a", range(50, 60))

    assert warm.committed_version == 2 and warm.download_bytes == 0


def test_a_cold_compactor_downloads_the_current_version(pipeline: Pipeline, reader: Reader) -> None:
    _commit(pipeline, "a", range(50))

    cold = _commit(pipeline, "b", range(50, 60))

    manifest = reader.store.read_manifest("docs", 1)
    assert cold.download_bytes == manifest.total_bytes
    assert len(snapshot_state(reader, "docs")) == 60


def test_a_dirty_cache_refetches_only_changed_chunks(pipeline: Pipeline, reader: Reader) -> None:
    class FailUpload(Hooks):
        def before(self, step: Step, collection: str) -> None:
            if step is Step.UPLOAD:
                raise ConnectionError("network gone mid-cycle")

    _commit(pipeline, "a", range(300))
    before = pipeline.compactor("x").pointers.read("docs").version
    with contextlib.suppress(ConnectionError):
        _commit(pipeline, "a", range(300, 310), FailUpload())

    retry = _commit(pipeline, "a", range(310, 311))  # same /tmp, now dirty

    total = reader.store.read_manifest("docs", before).total_bytes
    assert retry.committed_version == before + 1
    assert 0 < retry.download_bytes < total
    assert len(snapshot_state(reader, "docs")) == 311


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every PersistentClient opened on a working copy (each one loads its HNSW index)."""
    seen: list[Path] = []
    original = local_snapshot._open_client

    def counting(path: Path) -> Any:
        seen.append(path)
        return original(path)

    monkeypatch.setattr(local_snapshot, "_open_client", counting)
    return seen


def test_a_warm_compactor_opens_its_working_copy_once_per_cycle(
    pipeline: Pipeline, opens: list[Path]
) -> None:
    _commit(pipeline, "a", range(50))
    assert len(opens) == 2  # cold: the writer's client, then validation's fresh one
    opens.clear()

    _commit(pipeline, "a", range(50, 60))

    assert len(opens) == 1  # the writer is the client validation left open; validation reopens


def test_after_an_abandoned_cycle_the_writer_reopens_the_resynced_files(
    pipeline: Pipeline, reader: Reader, opens: list[Path]
) -> None:
    class FailUpload(Hooks):
        def before(self, step: Step, collection: str) -> None:
            if step is Step.UPLOAD:
                raise ConnectionError("network gone after validation")

    _commit(pipeline, "a", range(20))
    with contextlib.suppress(ConnectionError):
        _commit(pipeline, "a", range(20, 25), FailUpload())
    opens.clear()

    retry = _commit(pipeline, "a", range(25, 26))

    assert len(opens) == 2  # validation's client held unpublished writes: not reused
    assert retry.committed_version == 2
    assert len(snapshot_state(reader, "docs")) == 26


def test_greedy_fetch_takes_the_backlog_into_one_cycle(pipeline: Pipeline) -> None:
    pipeline.send(*(ops.upsert("docs", f"id{i}", 1, vector(i)) for i in range(60)))

    report = pipeline.cycle(pipeline.compactor("a"), pipeline.receive_event(max_messages=10))

    assert report.fetched == 50
    assert report.outcomes[0].messages == 60 and report.outcomes[0].committed_version == 1
    assert pipeline.queue_depth() == (0, 0)
