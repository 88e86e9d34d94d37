"""A corrupted or truncated blob is caught by its checksum, never opened, and shown by status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.cli import main
from chroma_compactor.errors import SnapshotCorrupt
from chroma_compactor.snapshot_cache import SnapshotCache
from chroma_compactor.status import collect_status
from support import snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline

MARK = b"CORRUPTED-BY-THE-TEST"


def _damage(pipeline: Pipeline, how: str) -> str:
    """Damage the largest blob of docs' version 1 in S3; return its key."""
    store = pipeline.compactor("a").store
    manifest = store.read_manifest("docs", 1)
    chunk = max((c for f in manifest.files for c in f.chunks), key=lambda c: c.size)
    key = store.blob_key("docs", chunk.sha256)
    body = pipeline.clients.s3.get_object(Bucket=pipeline.names.bucket, Key=key)["Body"].read()
    damaged = body[: len(body) // 2] if how == "truncated" else MARK + body[len(MARK) :]
    pipeline.clients.s3.put_object(Bucket=pipeline.names.bucket, Key=key, Body=damaged)
    return key


@pytest.fixture
def committed(pipeline: Pipeline) -> Pipeline:
    """docs at version 1 with 50 records, compacted by compactor "a"."""
    pipeline.send(
        *(ops.upsert("docs", f"id{i}", 1, vector(i), document=f"d{i}") for i in range(50))
    )
    pipeline.drain(pipeline.compactor("a"))
    return pipeline


@pytest.mark.parametrize("how", ["corrupted", "truncated"])
def test_a_damaged_blob_fails_the_cycle_cleanly_and_touches_nothing(
    committed: Pipeline, how: str
) -> None:
    key = _damage(committed, how)
    committed.send(ops.upsert("docs", "new", 1, vector(100)))
    cold = committed.compactor("cold")  # a new container: its cache must come from S3

    report = committed.cycle(cold)

    (outcome,) = report.outcomes
    assert outcome.abandoned is not None and "SnapshotCorrupt" in outcome.abandoned
    assert key in outcome.abandoned
    assert cold.pointers.read("docs").version == 1
    assert committed.queue_depth() == (1, 0)  # handed back at once, not deleted
    cache = SnapshotCache(Path(cold.settings.cache_dir), "docs")
    assert cache.clean_version() is None  # the half-synced copy is never trusted
    assert not any(MARK in p.read_bytes() for p in cache.snapshot.root.rglob("*") if p.is_file())


def test_status_shows_the_failure_until_a_later_commit(committed: Pipeline) -> None:
    _damage(committed, "corrupted")
    committed.send(ops.upsert("docs", "new", 1, vector(100)))
    committed.cycle(committed.compactor("cold"))

    status = collect_status(committed.clients, committed.settings, committed.clock)

    (docs,) = status.collections
    assert docs.failing
    assert "SnapshotCorrupt" in (docs.last_failure or "")
    assert any("docs: cycles fail" in p for p in status.problems)

    committed.clock.advance(1)
    committed.drain(committed.compactor("a"))  # its warm cache never needed the bad blob
    recovered = collect_status(committed.clients, committed.settings, committed.clock)
    assert not recovered.collections[0].failing
    assert recovered.problems == []


def test_a_reader_refuses_a_damaged_version_with_the_same_error(
    committed: Pipeline, reader: Reader
) -> None:
    key = _damage(committed, "truncated")

    with pytest.raises(SnapshotCorrupt, match=key):
        snapshot_state(reader, "docs")


def test_query_and_export_report_a_damaged_blob_and_exit_non_zero(
    committed: Pipeline, cli_env: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _damage(committed, "corrupted")

    assert main(["query", "docs", "--id", "id1"]) == 2
    assert main(["export", "docs", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("failed its checksum") == 2
    assert key.rsplit("/", 1)[-1][:12] in err
