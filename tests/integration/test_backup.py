"""backup and restore: a self-contained copy of a version, in a directory or in S3."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.backup import Directory, backup, restore
from chroma_compactor.cli import main
from chroma_compactor.errors import SnapshotCorrupt
from support import snapshot_state, vector

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.reader import Reader
    from support import Pipeline


def _two_versions(pipeline: Pipeline) -> None:
    c = pipeline.compactor("a")
    for i in range(6):
        pipeline.send(ops.upsert("docs", f"d{i}", 1, vector(i), document=f"doc {i}"))
    pipeline.drain(c)
    pipeline.send(ops.delete("docs", "d0", 2), ops.upsert("docs", "d1", 2, vector(50)))
    pipeline.drain(c)


@pytest.fixture
def target(request: pytest.FixtureRequest, cli_env: Pipeline, tmp_path: Path) -> str:
    if request.param == "dir":
        return str(tmp_path / "backup")
    cli_env.clients.s3.create_bucket(Bucket="backups")
    return "s3://backups/nightly/docs"


@pytest.mark.parametrize("target", ["dir", "s3"], indirect=True)
def test_a_backup_restores_its_version_as_the_next_one(
    cli_env: Pipeline, reader: Reader, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _two_versions(cli_env)
    then = snapshot_state(reader, "docs", 1)

    assert main(["backup", "docs", "--snapshot-version", "1", "--to", target]) == 0
    assert main(["restore", "--from", target]) == 0

    assert "as version 3" in capsys.readouterr().out
    assert snapshot_state(reader, "docs") == then
    assert reader.store.read_manifest("docs", 3).restored_from == target.rstrip("/")


def test_a_backup_restores_into_an_empty_pipeline(
    pipeline: Pipeline, reader: Reader, tmp_path: Path
) -> None:
    """Disaster recovery: the snapshots are gone, the backup is not."""
    _two_versions(pipeline)
    c = pipeline.compactor("b")
    then = snapshot_state(reader, "docs")
    backup(c.store, c.pointers, "docs", Directory(tmp_path / "b"))
    for key in [
        o["Key"] for o in pipeline.clients.s3.list_objects_v2(Bucket=c.store.bucket)["Contents"]
    ]:
        pipeline.clients.s3.delete_object(Bucket=c.store.bucket, Key=key)

    restore(c, Directory(tmp_path / "b"))

    assert snapshot_state(pipeline.reader(), "docs") == then


def test_a_damaged_backup_is_refused_by_blob_before_anything_is_written(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _two_versions(pipeline)
    c = pipeline.compactor("b")
    index = backup(c.store, c.pointers, "docs", Directory(tmp_path / "b"))
    damaged = sorted(index.blobs)[0]
    blob = tmp_path / "b" / "blobs" / damaged
    data = bytearray(blob.read_bytes())
    data[0] ^= 0xFF
    blob.write_bytes(bytes(data))

    with pytest.raises(SnapshotCorrupt, match=f"blob {damaged} is damaged"):
        restore(c, Directory(tmp_path / "b"))

    assert c.pointers.read("docs").version == 2
    assert c.leases.holder("docs").owner is None
