"""Bulk loads by delta: a run's records in one S3 object, merged by the compactor in one cycle.

A *delta* is gzip-compressed NDJSON: one line per record, each line exactly the body its upsert
message would have had (``ops.encode``), so the compactor checks a delta's records with the very
decoder that checks messages. It lives in the snapshot bucket at
``deltas/<collection>/<run id>.ndjson.gz``: outside the snapshot prefix, so no collection name
can collide with it and ``reset`` never deletes a load that is still queued. A lifecycle rule
expires it after ``DELTA_EXPIRY_DAYS`` (longer than the DLQ keeps the message that names it).

The source table stays the source of truth: the writer puts every record in the table with
``bulk_run = <run id>`` (the forwarder skips those images: the delta carries them), then one
*run item* ``{collection, id: "compaction_run#<run id>", compaction_run: {...}}``, whose INSERT
the forwarder turns into one ``delta`` message per shard. A rebuild from a table scan reads the
records like any others and skips the run item (it has no embedding, document or metadata).

This module does not import Chroma: the writer uses it too.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import tempfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chroma_compactor import ops
from chroma_compactor.errors import InvalidMessage
from chroma_compactor.ops import DeltaRef, Operation, OpKind
from chroma_compactor.shards import shard_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from mypy_boto3_s3 import S3Client

# Attributes of the source table (a record's ``bulk_run``, the run item's ``compaction_run``).
BULK_RUN = "bulk_run"
RUN = "compaction_run"
RUN_ID_PREFIX = "compaction_run#"
DELTA_PREFIX = "deltas"
# Longer than the DLQ's 14 days, so a redriven delta message still finds its object.
DELTA_EXPIRY_DAYS = 21
# A delta is spooled in memory up to this size, then on disk.
_SPOOL_BYTES = 64 << 20
_READ_BYTES = 1 << 20
# S3 codes that mean this delta can never be read, as opposed to a transient failure.
_GONE = {"NoSuchKey", "404", "NoSuchBucket", "AccessDenied", "403", "PreconditionFailed", "412"}
_MAX_PROBLEMS_SHOWN = 5


class DeltaUnavailable(InvalidMessage):
    """A delta that can never be applied as named: missing, damaged, or changed since."""


def delta_key(collection: str, run_id: str) -> str:
    return f"{DELTA_PREFIX}/{collection}/{run_id}.ndjson.gz"


def run_item_id(run_id: str) -> str:
    return f"{RUN_ID_PREFIX}{run_id}"


# -- writing --------------------------------------------------------------------------------------


class DeltaFile:
    """A delta being written: gzip NDJSON, spooled to disk past 64 MiB, hashed when finished."""

    def __init__(self) -> None:
        self._raw: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        # mtime=0: the same records give the same bytes, so the same sha256.
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)
        self.records = 0

    def add(self, body: str) -> None:
        """Append one record: the body of its upsert message (``ops.checked_body``)."""
        self._gzip.write(body.encode("utf-8") + b"\n")
        self.records += 1

    def upload(self, s3: S3Client, bucket: str, key: str) -> DeltaRef:
        """Finish the file and put it; S3 refuses the upload if its sha256 does not match."""
        self._gzip.close()
        digest, size = _digest(self._raw)
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=self._raw,
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
            ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
        )
        return DeltaRef(bucket=bucket, key=key, sha256=digest, size=size, records=self.records)

    def close(self) -> None:
        self._gzip.close()
        self._raw.close()


def _digest(f: IO[bytes]) -> tuple[str, int]:
    f.seek(0)
    h = hashlib.sha256()
    size = 0
    while block := f.read(_READ_BYTES):
        h.update(block)
        size += len(block)
    f.seek(0)
    return h.hexdigest(), size


def run_item(collection: str, run_id: str, ref: DeltaRef) -> dict[str, Any]:
    """The source table item that announces a run (DynamoDB attribute values)."""
    return {
        "collection": {"S": collection},
        "id": {"S": run_item_id(run_id)},
        RUN: {
            "M": {
                "bucket": {"S": ref.bucket},
                "key": {"S": ref.key},
                "sha256": {"S": ref.sha256},
                "size": {"N": str(ref.size)},
                "records": {"N": str(ref.records)},
            }
        },
    }


def delta_operations(collection: str, id_: str, run: Any, shards: int) -> list[Operation]:
    """A run item's image (deserialized) -> one delta message per shard."""
    if not isinstance(run, dict) or not id_.startswith(RUN_ID_PREFIX):
        raise InvalidMessage(f"run item {id_!r} is not a compaction run")
    try:
        return [
            ops.delta(
                collection,
                id_.removeprefix(RUN_ID_PREFIX),
                DeltaRef(
                    bucket=run["bucket"],
                    key=run["key"],
                    sha256=run["sha256"],
                    size=int(run["size"]),
                    records=int(run["records"]),
                    shard=shard,
                    shards=shards,
                ),
            )
            for shard in range(shards)
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidMessage(f"run item {id_!r} is incomplete: {e}") from None


# -- reading --------------------------------------------------------------------------------------


@dataclass
class DeltaReader:
    """Streams one delta message's records from S3, in bounded chunks.

    The object is read twice: once to check its size and sha256 before anything is applied (a
    damaged delta must change nothing), then again, pinned to the same ETag, to decode. Memory
    stays one chunk of records whatever the size of the delta.
    """

    s3: S3Client
    op: Operation
    problems: list[str] = field(default_factory=list)  # records that could not be decoded
    read: int = 0  # records of this message's shard
    _etag: str = ""

    @property
    def ref(self) -> DeltaRef:
        assert self.op.delta is not None  # a delta op always carries its ref (ops checks it)
        return self.op.delta

    def chunks(self, size: int) -> Iterator[list[Operation]]:
        """Verify, then yield this shard's records, ``size`` at a time; DeltaUnavailable if the
        object is missing or not what the message names."""
        etag = self._verify()
        body = self._get(IfMatch=etag)
        gzipped = self.ref.key.endswith(".gz")
        lines: Iterable[bytes] = (
            gzip.GzipFile(fileobj=body, mode="rb") if gzipped else body.iter_lines()
        )
        chunk: list[Operation] = []
        try:
            for number, line in enumerate(lines, 1):
                op = self._record(number, line)
                if op is None or shard_of(op.id, self.ref.shards) != self.ref.shard:
                    continue
                self.read += 1
                chunk.append(op)
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DeltaUnavailable(f"{self._name()}: cannot be decompressed: {e}") from None
        finally:
            body.close()
        if chunk:
            yield chunk

    def failure(self) -> str | None:
        """Why this message must not be deleted, if some records could not be read."""
        if not self.problems:
            return None
        shown = "; ".join(self.problems[:_MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - _MAX_PROBLEMS_SHOWN
        return f"{self._name()}: {len(self.problems)} bad records: {shown}" + (
            f" (and {more} more)" if more > 0 else ""
        )

    def _record(self, number: int, line: bytes) -> Operation | None:
        if not line.strip():
            return None
        try:
            op = ops.decode(line.decode("utf-8"))
        except (InvalidMessage, UnicodeDecodeError) as e:
            self.problems.append(f"line {number}: {e}")
            return None
        if op.op is not OpKind.UPSERT or op.collection != self.op.collection:
            self.problems.append(
                f"line {number}: a delta of {self.op.collection!r} holds only its upserts, "
                f"not a {op.op} of {op.collection!r}"
            )
            return None
        return op

    def _verify(self) -> str:
        body = self._get()
        h = hashlib.sha256()
        size = 0
        try:
            for block in body.iter_chunks(_READ_BYTES):
                h.update(block)
                size += len(block)
        finally:
            body.close()
        if size != self.ref.size or h.hexdigest() != self.ref.sha256:
            raise DeltaUnavailable(
                f"{self._name()}: damaged: {size} bytes with sha256 {h.hexdigest()}, "
                f"expected {self.ref.size} bytes with sha256 {self.ref.sha256}"
            )
        return self._etag

    def _get(self, **condition: str) -> Any:
        try:
            out = self.s3.get_object(Bucket=self.ref.bucket, Key=self.ref.key, **condition)  # type: ignore[arg-type]
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in _GONE:
                raise DeltaUnavailable(f"{self._name()}: cannot be read: {code}") from None
            raise  # transient: the cycle is abandoned and the messages come back
        self._etag = str(out["ETag"])
        return out["Body"]

    def _name(self) -> str:
        return f"delta {self.op.id!r} (s3://{self.ref.bucket}/{self.ref.key})"
