"""A self-contained copy of one version, in a directory or under an S3 prefix, and back.

A backup holds the version's manifest, every blob it names, and ``backup.json`` (written last,
so a backup without it is incomplete): the partition, version, formats and each blob's sha256
and size. Restore checks every blob and the manifest against the index before it writes a byte,
then commits the content as the partition's next version, like a rollback. It restores into the
partition of the same name, in this stack or another (Chroma's collection inside the snapshot
carries that name).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError
from pydantic import BaseModel

from chroma_compactor.errors import CompactorError, SnapshotCorrupt
from chroma_compactor.history import held_lease, republish
from chroma_compactor.snapshot_store import Manifest, upgrade

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from chroma_compactor.cycle import Compactor
    from chroma_compactor.pointer import PointerTable
    from chroma_compactor.snapshot_store import SnapshotStore

INDEX = "backup.json"
MANIFEST = "manifest.json"
_WORKERS = 8


class BackupIndex(BaseModel):
    partition: str
    version: int
    format_version: int
    chroma_version: str
    record_count: int
    manifest_sha256: str
    blobs: dict[str, int]  # sha256 -> size


class Place(Protocol):
    """Where a backup lives."""

    def put(self, name: str, data: bytes) -> None: ...
    def get(self, name: str) -> bytes: ...


class Directory:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def get(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise SnapshotCorrupt(f"backup {self} has no {name}") from None

    def __str__(self) -> str:
        return str(self.root)


class S3Prefix:
    def __init__(self, s3: S3Client, bucket: str, prefix: str) -> None:
        self._s3, self.bucket, self.prefix = s3, bucket, prefix.strip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def get(self, name: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise SnapshotCorrupt(f"backup {self} has no {name}") from e
            raise

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def place(target: str, s3: S3Client) -> Place:
    """``s3://bucket/prefix`` or a directory."""
    if target.startswith("s3://"):
        bucket, _, prefix = target.removeprefix("s3://").partition("/")
        if not bucket:
            raise CompactorError(f"{target!r} names no bucket: use s3://BUCKET/PREFIX")
        return S3Prefix(s3, bucket, prefix)
    return Directory(Path(target))


def backup(
    store: SnapshotStore,
    pointers: PointerTable,
    partition: str,
    to: Place,
    version: int | None = None,
) -> BackupIndex:
    """Copy ``version`` (default: the current one) of ``partition`` to ``to``."""
    version = version or pointers.read(partition).version
    if not version:
        raise CompactorError(f"{partition!r} has no committed version to back up")
    manifest = store.read_manifest(partition, version)
    sizes = {c.sha256: c.size for f in manifest.files for c in f.chunks}

    def copy(sha256: str) -> None:
        to.put(f"blobs/{sha256}", store.get_blob(partition, sha256, sizes[sha256]))

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        list(pool.map(copy, sorted(sizes)))
    body = manifest.model_dump_json(indent=1).encode()
    to.put(MANIFEST, body)
    index = BackupIndex(
        partition=partition,
        version=version,
        format_version=manifest.format_version,
        chroma_version=manifest.chroma_version,
        record_count=manifest.record_count,
        manifest_sha256=hashlib.sha256(body).hexdigest(),
        blobs=sizes,
    )
    to.put(INDEX, index.model_dump_json(indent=1).encode())
    return index


def restore(c: Compactor, source: Place) -> Manifest:
    """Check the whole backup, then publish it as its partition's next version."""
    index = BackupIndex.model_validate_json(source.get(INDEX))
    body = source.get(MANIFEST)
    if hashlib.sha256(body).hexdigest() != index.manifest_sha256:
        raise SnapshotCorrupt(f"backup {source}: {MANIFEST} does not match {INDEX}")
    manifest = Manifest.model_validate(upgrade(json.loads(body), f"backup {source}"))
    if manifest.blob_names() != set(index.blobs):
        raise SnapshotCorrupt(f"backup {source}: {MANIFEST} and {INDEX} name different blobs")

    def checked(sha256: str) -> bytes:
        data = source.get(f"blobs/{sha256}")
        if len(data) != index.blobs[sha256] or hashlib.sha256(data).hexdigest() != sha256:
            raise SnapshotCorrupt(f"backup {source}: blob {sha256} is damaged")
        return data

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        list(pool.map(checked, sorted(index.blobs)))  # all of it, before anything is written
        partition = index.partition
        with held_lease(c, partition) as beat:
            pointer = c.pointers.read(partition)
            list(
                pool.map(
                    lambda sha: c.store.put_blob(partition, sha, checked(sha)), sorted(index.blobs)
                )
            )
            return republish(c, beat, pointer, manifest, restored_from=str(source))
