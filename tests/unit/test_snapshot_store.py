"""SnapshotStore: content-addressed chunks in S3, a manifest per version, verified on the way in."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

import pytest

from chroma_compactor import snapshot_store
from chroma_compactor.errors import LeaseLost, SnapshotCorrupt, UnknownSnapshotFormat
from chroma_compactor.local_snapshot import LocalSnapshot
from chroma_compactor.snapshot_store import (
    DigestIndex,
    FileEntry,
    Manifest,
    SnapshotStore,
    TransferStats,
)

if TYPE_CHECKING:
    from pathlib import Path

    from chroma_compactor.wiring import Clients

CHUNK = 4096
BUCKET = "snapshots"
COLLECTION = "docs"
BIG = "chroma/chroma.sqlite3"


@pytest.fixture
def store(clients: Clients) -> SnapshotStore:
    clients.s3.create_bucket(Bucket=BUCKET)
    return SnapshotStore(clients.s3, BUCKET, "snaps")


def _write_snapshot(root: Path) -> LocalSnapshot:
    """Five full chunks and a tail, a file under one chunk, and an empty file."""
    rng = random.Random(42)
    files = {
        BIG: rng.randbytes(5 * CHUNK + 100),
        "chroma/0f1e/data_level0.bin": rng.randbytes(CHUNK // 2),
        "chroma/0f1e/length.bin": b"",
        "ledger.sqlite3": rng.randbytes(3000),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return LocalSnapshot(root)


def _upload(
    store: SnapshotStore,
    snapshot: LocalSnapshot,
    version: int,
    parent: Manifest | None = None,
    token: int = 1,
    digests: DigestIndex | None = None,
) -> tuple[Manifest, TransferStats]:
    return store.upload(
        snapshot,
        collection=COLLECTION,
        version=version,
        parent=parent,
        fencing_token=token,
        record_count=0,
        tombstone_count=0,
        dimension=None,
        chroma_version="test",
        chunk_bytes=CHUNK,
        digests=digests,
    )


def _contents(snapshot: LocalSnapshot) -> dict[str, bytes]:
    return {rel.as_posix(): (snapshot.root / rel).read_bytes() for rel in snapshot.files()}


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_sync_reproduces_every_uploaded_file_byte_for_byte(
    store: SnapshotStore, tmp_path: Path
) -> None:
    source = _write_snapshot(tmp_path / "source")
    _upload(store, source, 1)
    target = LocalSnapshot(tmp_path / "target")

    store.sync(store.read_manifest(COLLECTION, 1), target)

    assert _contents(target) == _contents(source)


def test_a_second_upload_sends_only_the_chunks_that_changed(
    store: SnapshotStore, tmp_path: Path
) -> None:
    # GIVEN version 1 uploaded
    snapshot = _write_snapshot(tmp_path / "work")
    v1, first = _upload(store, snapshot, 1)
    assert first.blobs == len(v1.blob_names())
    # WHEN one byte inside the third chunk of one file changes and version 2 is uploaded
    _flip_byte(snapshot.root / BIG, 2 * CHUNK + 10)
    _, second = _upload(store, snapshot, 2, parent=v1)
    # THEN only that chunk is sent
    assert second == TransferStats(blobs=1, bytes=CHUNK)


def test_sync_over_the_parent_version_fetches_only_changed_chunks(
    store: SnapshotStore, tmp_path: Path
) -> None:
    # GIVEN a cache that holds version 1
    work = _write_snapshot(tmp_path / "work")
    v1, _ = _upload(store, work, 1)
    cache = LocalSnapshot(tmp_path / "cache")
    store.sync(v1, cache)
    # WHEN version 2 differs in one chunk
    _flip_byte(work.root / BIG, 4 * CHUNK)
    v2, _ = _upload(store, work, 2, parent=v1)
    fetched = store.sync(v2, cache)
    # THEN the cache fetches just that chunk and matches version 2
    assert fetched == TransferStats(blobs=1, bytes=CHUNK)
    assert _contents(cache) == _contents(work)


def test_sync_follows_a_file_that_shrank_and_removes_files_no_longer_named(
    store: SnapshotStore, tmp_path: Path
) -> None:
    work = _write_snapshot(tmp_path / "work")
    v1, _ = _upload(store, work, 1)
    cache = LocalSnapshot(tmp_path / "cache")
    store.sync(v1, cache)
    # WHEN version 2 cuts the big file to two chunks and drops the ledger
    (work.root / BIG).write_bytes((work.root / BIG).read_bytes()[: 2 * CHUNK])
    (work.root / "ledger.sqlite3").unlink()
    v2, _ = _upload(store, work, 2, parent=v1)

    fetched = store.sync(v2, cache)

    assert fetched.blobs == 0
    assert _contents(cache) == _contents(work)


def _corrupt_a_blob_of(
    store: SnapshotStore, clients: Clients, manifest: Manifest, cut: bool
) -> None:
    (entry,) = [f for f in manifest.files if f.path == BIG]
    key = store.blob_key(COLLECTION, entry.chunks[1].sha256)
    data = clients.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    bad = data[:-1] if cut else bytes([data[0] ^ 0xFF]) + data[1:]
    clients.s3.put_object(Bucket=BUCKET, Key=key, Body=bad)


@pytest.mark.parametrize("cut", [False, True], ids=["overwritten", "truncated"])
def test_a_damaged_blob_makes_sync_raise_snapshot_corrupt(
    store: SnapshotStore, clients: Clients, tmp_path: Path, cut: bool
) -> None:
    manifest, _ = _upload(store, _write_snapshot(tmp_path / "work"), 1)
    _corrupt_a_blob_of(store, clients, manifest, cut)

    with pytest.raises(SnapshotCorrupt, match="failed its checksum"):
        store.sync(manifest, LocalSnapshot(tmp_path / "cache"))


def test_a_missing_blob_makes_sync_raise_snapshot_corrupt(
    store: SnapshotStore, clients: Clients, tmp_path: Path
) -> None:
    manifest, _ = _upload(store, _write_snapshot(tmp_path / "work"), 1)
    clients.s3.delete_object(
        Bucket=BUCKET, Key=store.blob_key(COLLECTION, manifest.files[0].chunks[0].sha256)
    )

    with pytest.raises(SnapshotCorrupt, match="is missing"):
        store.sync(manifest, LocalSnapshot(tmp_path / "cache"))


def test_a_missing_manifest_raises_snapshot_corrupt(store: SnapshotStore) -> None:
    with pytest.raises(SnapshotCorrupt, match="manifest of 'docs' version 7 is missing"):
        store.read_manifest(COLLECTION, 7)


def test_a_manifest_of_a_newer_format_raises_unknown_snapshot_format(
    store: SnapshotStore, clients: Clients, tmp_path: Path
) -> None:
    manifest, _ = _upload(store, _write_snapshot(tmp_path / "work"), 1)
    raw = json.loads(manifest.model_dump_json())
    raw["format_version"] = 99
    clients.s3.put_object(
        Bucket=BUCKET, Key=store.manifest_key(COLLECTION, 1), Body=json.dumps(raw).encode()
    )

    with pytest.raises(UnknownSnapshotFormat, match="snapshot format 99"):
        store.read_manifest(COLLECTION, 1)


def _format_2_with_a_migration_from_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code as it would be after a format change: format 2, and the upgrade of format 1."""

    def from_1(raw: dict[str, Any]) -> dict[str, Any]:
        return raw | {"record_count": raw["record_count"] + 1000}  # stands in for a real change

    monkeypatch.setattr(snapshot_store, "FORMAT_VERSION", 2)
    monkeypatch.setitem(snapshot_store.MIGRATIONS, 1, from_1)


def test_an_older_format_is_upgraded_by_its_registered_migration_on_load(
    store: SnapshotStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload(store, _write_snapshot(tmp_path / "work"), 1)
    _format_2_with_a_migration_from_1(monkeypatch)

    loaded = store.read_manifest(COLLECTION, 1)

    assert (loaded.format_version, loaded.record_count) == (2, 1000)


def test_an_older_format_without_a_migration_is_refused_by_name(
    store: SnapshotStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload(store, _write_snapshot(tmp_path / "work"), 1)
    monkeypatch.setattr(snapshot_store, "FORMAT_VERSION", 3)
    monkeypatch.setitem(snapshot_store.MIGRATIONS, 1, lambda raw: raw)  # 1 -> 2, but no 2 -> 3

    with pytest.raises(UnknownSnapshotFormat, match="format 2 and no migration to 3"):
        store.read_manifest(COLLECTION, 1)


def test_a_manifest_left_by_a_lower_fencing_token_is_replaced(
    store: SnapshotStore, tmp_path: Path
) -> None:
    # GIVEN version 1 built by token 1, whose lease then ran out
    _upload(store, _write_snapshot(tmp_path / "old"), 1, token=1)
    # WHEN token 2 builds version 1 again
    newer = _write_snapshot(tmp_path / "new")
    _flip_byte(newer.root / BIG, 0)
    written, _ = _upload(store, newer, 1, token=2)
    # THEN its manifest is the one in S3
    assert store.read_manifest(COLLECTION, 1) == written


def test_a_manifest_from_a_higher_fencing_token_is_kept_and_the_late_writer_loses(
    store: SnapshotStore, tmp_path: Path
) -> None:
    kept, _ = _upload(store, _write_snapshot(tmp_path / "new"), 1, token=3)
    stale = _write_snapshot(tmp_path / "old")
    _flip_byte(stale.root / BIG, 0)

    with pytest.raises(LeaseLost, match="token 3"):
        _upload(store, stale, 1, token=2)

    assert store.read_manifest(COLLECTION, 1) == kept


def test_list_versions_names_only_versions_with_a_manifest(
    store: SnapshotStore, tmp_path: Path
) -> None:
    snapshot = _write_snapshot(tmp_path / "work")
    v1, _ = _upload(store, snapshot, 1)
    _upload(store, snapshot, 2, parent=v1)

    assert store.list_versions(COLLECTION) == [1, 2]


# -- the digest index: unchanged files are not read again --------------------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the store hashed (read whole), in order."""
    seen: list[str] = []
    original = snapshot_store._describe

    def counting(path: Path, rel: str, chunk_bytes: int) -> FileEntry:
        seen.append(rel)
        return original(path, rel, chunk_bytes)

    monkeypatch.setattr(snapshot_store, "_describe", counting)
    return seen


def test_an_upload_rereads_only_the_files_that_changed_since_the_last(
    store: SnapshotStore, tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DigestIndex, "RACY_NS", 0)  # the files are "old enough" at once
    snapshot = _write_snapshot(tmp_path / "snap")
    index = tmp_path / "digests.json"
    v1, _ = _upload(store, snapshot, 1, digests=DigestIndex(index))
    (snapshot.root / "ledger.sqlite3").write_bytes(b"changed")
    reads.clear()

    v2, _ = _upload(store, snapshot, 2, v1, digests=DigestIndex(index))

    assert reads == ["ledger.sqlite3"]
    assert v2.files == _upload(store, snapshot, 3, v2)[0].files  # same as reading every file


def test_a_file_written_just_before_it_was_hashed_is_read_again_next_time(
    store: SnapshotStore, tmp_path: Path, reads: list[str]
) -> None:
    snapshot = _write_snapshot(tmp_path / "snap")  # written now: inside the racy window
    index = tmp_path / "digests.json"
    v1, _ = _upload(store, snapshot, 1, digests=DigestIndex(index))
    reads.clear()

    _upload(store, snapshot, 2, v1, digests=DigestIndex(index))

    assert sorted(reads) == sorted(f.path for f in v1.files)
