"""Versioned snapshots in S3: a manifest per version, content-addressed blobs shared by all.

    <prefix>/<collection>/versions/<000000000042>/manifest.json
    <prefix>/<collection>/blobs/<sha256>

Every file of a snapshot root is split into fixed-size chunks; each chunk is a blob named by its
sha256, so a cycle uploads only chunks that changed and a cache downloads only chunks it lacks.
The manifest is written last: a version without a manifest does not exist.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from chroma_compactor.errors import LeaseLost, SnapshotCorrupt, UnknownSnapshotFormat

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

    from chroma_compactor.local_snapshot import LocalSnapshot

FORMAT_VERSION = 1
_VERSION_DIGITS = 12
_WORKERS = 8
_MANIFEST_ATTEMPTS = 5


# Upgrades of older manifest formats, applied in order on load: MIGRATIONS[n] turns a format-n
# manifest (raw JSON) into format n + 1. Bump FORMAT_VERSION only with the migration from the
# previous format registered here, so every retained version stays readable.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upgrade(raw: dict[str, Any], what: str) -> dict[str, Any]:
    """Bring a raw manifest to FORMAT_VERSION; refuse a newer format this code cannot read."""
    found = raw.get("format_version", 1)
    if found > FORMAT_VERSION:
        raise UnknownSnapshotFormat(
            f"{what} has snapshot format {found}; this code reads up to {FORMAT_VERSION}: "
            "upgrade chroma-compactor"
        )
    while found < FORMAT_VERSION:
        migration = MIGRATIONS.get(found)
        if migration is None:
            raise UnknownSnapshotFormat(
                f"{what} has snapshot format {found} and no migration to {found + 1} is registered"
            )
        raw = migration(raw) | {"format_version": found + 1}
        found += 1
    return raw


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True)
    sha256: str
    size: int


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True)
    path: str
    size: int
    sha256: str
    chunks: list[Chunk]


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)
    format_version: int = FORMAT_VERSION
    collection: str
    version: int
    parent_version: int | None
    chroma_version: str
    record_count: int
    tombstone_count: int = 0
    dimension: int | None
    fencing_token: int
    created_at: str
    chunk_bytes: int
    files: list[FileEntry]
    # Provenance of a version that re-publishes other content (`rollback`, `restore`).
    rolled_back_from: int | None = None
    restored_from: str | None = None

    def blob_names(self) -> set[str]:
        return {c.sha256 for f in self.files for c in f.chunks}

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class TransferStats:
    blobs: int = 0
    bytes: int = 0


class SnapshotStore:
    """Reads and writes snapshot versions of collections in one bucket under one prefix."""

    def __init__(self, s3: S3Client, bucket: str, prefix: str) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def manifest_key(self, collection: str, version: int) -> str:
        return f"{self._collection_prefix(collection)}/versions/{version:0{_VERSION_DIGITS}d}/manifest.json"

    def blob_key(self, collection: str, sha256: str) -> str:
        return f"{self._collection_prefix(collection)}/blobs/{sha256}"

    def _collection_prefix(self, collection: str) -> str:
        return f"{self.prefix}/{collection}" if self.prefix else collection

    # -- manifests ------------------------------------------------------------------------------

    def read_manifest(self, collection: str, version: int) -> Manifest:
        key = self.manifest_key(collection, version)
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise SnapshotCorrupt(
                    f"manifest of {collection!r} version {version} is missing (s3://{self.bucket}/{key})"
                ) from e
            raise
        return Manifest.model_validate(
            upgrade(json.loads(body), f"{collection!r} version {version}")
        )

    def list_versions(self, collection: str) -> list[int]:
        prefix = f"{self._collection_prefix(collection)}/versions/"
        versions: list[int] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :].split("/", 1)[0]
                if obj["Key"].endswith("/manifest.json") and name.isdigit():
                    versions.append(int(name))
        return sorted(versions)

    # -- upload ---------------------------------------------------------------------------------

    def upload(
        self,
        snapshot: LocalSnapshot,
        *,
        collection: str,
        version: int,
        parent: Manifest | None,
        fencing_token: int,
        record_count: int,
        tombstone_count: int,
        dimension: int | None,
        chroma_version: str,
        chunk_bytes: int,
        upload_all: bool = False,
        digests: DigestIndex | None = None,
    ) -> tuple[Manifest, TransferStats]:
        """Upload the blobs the parent lacks (every blob if ``upload_all``), then the manifest.

        ``digests`` remembers the chunks of files that have not changed since they were last
        read, so a cycle reads what Chroma rewrote, not the whole snapshot.
        """
        index = digests or DigestIndex(None)
        files = [
            index.describe(snapshot.root / rel, rel.as_posix(), chunk_bytes)
            for rel in snapshot.files()
        ]
        index.save()
        known = parent.blob_names() if parent is not None and not upload_all else set()
        pending: dict[str, tuple[Path, int, int]] = {}
        for entry in files:
            offset = 0
            for chunk in entry.chunks:
                if chunk.sha256 not in known and chunk.sha256 not in pending:
                    pending[chunk.sha256] = (snapshot.root / entry.path, offset, chunk.size)
                offset += chunk.size
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            list(
                pool.map(
                    lambda item: self._put_blob(collection, item[0], *item[1]), pending.items()
                )
            )
        manifest = Manifest(
            collection=collection,
            version=version,
            parent_version=parent.version if parent is not None else None,
            chroma_version=chroma_version,
            record_count=record_count,
            tombstone_count=tombstone_count,
            dimension=dimension,
            fencing_token=fencing_token,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            chunk_bytes=chunk_bytes,
            files=files,
        )
        self.put_manifest(manifest)
        return manifest, TransferStats(
            blobs=len(pending), bytes=sum(size for _, _, size in pending.values())
        )

    def put_manifest(self, manifest: Manifest) -> None:
        """Write a manifest without ever overwriting one another writer could commit.

        A manifest key names a version, and two cycles (one whose lease ran out, one that took
        over) may both build that version. The write is conditional (If-None-Match), so a late
        writer cannot replace the manifest a commit is about to point at. A manifest already
        there from a lower fencing token is an orphan whose writer can never commit any more
        (its token is not the lease's): it is removed and the write tried again.
        """
        key = self.manifest_key(manifest.collection, manifest.version)
        body = manifest.model_dump_json(indent=1).encode()
        for _ in range(_MANIFEST_ATTEMPTS):
            try:
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
                return
            except ClientError as e:
                if e.response["Error"]["Code"] not in (
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                    "412",
                    "409",
                ):
                    raise
            try:
                existing = self.read_manifest(manifest.collection, manifest.version)
            except SnapshotCorrupt:
                continue  # gone again meanwhile: just retry the write
            if existing.fencing_token > manifest.fencing_token:
                raise LeaseLost(
                    f"version {manifest.version} of {manifest.collection!r} was already built by "
                    f"token {existing.fencing_token}, newer than ours ({manifest.fencing_token})"
                )
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        raise LeaseLost(f"could not claim manifest {key}: another writer keeps racing for it")

    def _put_blob(self, collection: str, sha256: str, path: Path, offset: int, size: int) -> None:
        with path.open("rb") as f:
            f.seek(offset)
            self.put_blob(collection, sha256, f.read(size))

    def get_blob(self, collection: str, sha256: str, size: int | None = None) -> bytes:
        """A whole blob, checked against its name (and its size, when known)."""
        key = self.blob_key(collection, sha256)
        try:
            data = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise SnapshotCorrupt(f"blob s3://{self.bucket}/{key} is missing") from e
            raise
        if (size is not None and len(data) != size) or hashlib.sha256(data).hexdigest() != sha256:
            raise SnapshotCorrupt(
                f"blob s3://{self.bucket}/{key} failed its checksum ({len(data)} bytes"
                + ("" if size is None else f", expected {size}")
                + "); the snapshot was not opened"
            )
        return data

    def put_blob(self, collection: str, sha256: str, data: bytes) -> None:
        # S3 checks the body against our own sha256 on arrival, so a blob is never stored torn.
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self.blob_key(collection, sha256),
            Body=data,
            ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
        )

    # -- download -------------------------------------------------------------------------------

    def sync(self, manifest: Manifest, snapshot: LocalSnapshot) -> TransferStats:
        """Make ``snapshot.root`` hold exactly the manifest's files, fetching only missing chunks.

        Every fetched chunk is checked against its sha256 before it is written, so a corrupted or
        truncated blob is never opened; a local chunk is reused only if its own hash matches.
        """
        snapshot.root.mkdir(parents=True, exist_ok=True)
        wanted = {f.path for f in manifest.files}
        for rel in snapshot.files():
            if rel.as_posix() not in wanted:
                (snapshot.root / rel).unlink()
        jobs: list[tuple[Path, int, Chunk]] = []
        for entry in manifest.files:
            path = snapshot.root / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            have = _local_chunk_hashes(path, manifest.chunk_bytes)
            offset = 0
            for i, chunk in enumerate(entry.chunks):
                if i >= len(have) or have[i] != chunk.sha256:
                    jobs.append((path, offset, chunk))
                offset += chunk.size
            with path.open("ab") as f:  # create if missing, then set the final size
                f.truncate(entry.size)
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            list(pool.map(lambda job: self._fetch_chunk(manifest.collection, *job), jobs))
        return TransferStats(blobs=len(jobs), bytes=sum(c.size for _, _, c in jobs))

    def _fetch_chunk(self, collection: str, path: Path, offset: int, chunk: Chunk) -> None:
        data = self.get_blob(collection, chunk.sha256, chunk.size)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    # -- retention ------------------------------------------------------------------------------

    def delete_versions(self, collection: str, versions: Iterable[int]) -> int:
        keys = [{"Key": self.manifest_key(collection, v)} for v in versions]
        return self._delete_keys(keys)

    def delete_blobs(self, collection: str, names: Iterable[str]) -> int:
        return self._delete_keys([{"Key": self.blob_key(collection, name)} for name in names])

    def unreferenced_blobs(
        self, collection: str, keep: Iterable[Manifest], grace_seconds: float
    ) -> list[str]:
        """Blobs that no manifest of ``keep`` names, older than the grace period.

        The grace period protects blobs that an in-flight cycle has uploaded but not yet
        named in a committed manifest.
        """
        referenced: set[str] = set()
        for manifest in keep:
            referenced |= manifest.blob_names()
        prefix = f"{self._collection_prefix(collection)}/blobs/"
        cutoff = datetime.now(UTC).timestamp() - grace_seconds
        doomed: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name not in referenced and obj["LastModified"].timestamp() < cutoff:
                    doomed.append(name)
        return doomed

    def _delete_keys(self, keys: list[dict[str, Any]]) -> int:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            self._s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": keys[start : start + 1000], "Quiet": True},  # type: ignore[typeddict-item]
            )
        return len(keys)


class DigestIndex:
    """The chunk digests of a working copy's files, keyed by each file's stat.

    A file whose size, mtime, ctime and inode are what they were when it was hashed has the same
    bytes (Chroma rewrites files in place or replaces them; either changes the stat), so its
    entry is reused instead of reading it again: most of a large snapshot (the HNSW files) stays
    untouched between Chroma's index flushes. A file is remembered only if it was last modified
    well before it was hashed, so a later write cannot share its timestamp (git's "racy clean"
    rule). ``path`` None keeps nothing.
    """

    RACY_NS = 2_000_000_000

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._seen: dict[str, dict[str, Any]] = {}
        self._kept: dict[str, dict[str, Any]] = {}
        if path is not None:
            try:
                self._seen = json.loads(path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                self._seen = {}

    def describe(self, path: Path, rel: str, chunk_bytes: int) -> FileEntry:
        before = _stat_key(path, chunk_bytes)
        known = self._seen.get(rel)
        if known is not None and known["stat"] == before:
            self._kept[rel] = known
            return FileEntry.model_validate(known["entry"])
        entry = _describe(path, rel, chunk_bytes)
        settled = time.time_ns() - max(before[2], before[3]) > self.RACY_NS
        if settled and _stat_key(path, chunk_bytes) == before:
            self._kept[rel] = {"stat": before, "entry": entry.model_dump()}
        return entry

    def save(self) -> None:
        """Keep the entries of the files described since loading (others are gone)."""
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._kept))
        tmp.replace(self._path)


def _stat_key(path: Path, chunk_bytes: int) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, chunk_bytes]


def _describe(path: Path, rel: str, chunk_bytes: int) -> FileEntry:
    whole = hashlib.sha256()
    chunks: list[Chunk] = []
    size = 0
    with path.open("rb") as f:
        while data := f.read(chunk_bytes):
            whole.update(data)
            chunks.append(Chunk(sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
            size += len(data)
    return FileEntry(path=rel, size=size, sha256=whole.hexdigest(), chunks=chunks)


def _local_chunk_hashes(path: Path, chunk_bytes: int) -> list[str]:
    if not path.exists():
        return []
    hashes: list[str] = []
    with path.open("rb") as f:
        while data := f.read(chunk_bytes):
            hashes.append(hashlib.sha256(data).hexdigest())
    return hashes
