"""Rebuild a collection's partitions from a scan of the source table, and reshard it.

A cycle applies messages on top of the current snapshot under the ledger's rules; a rebuild
instead starts every partition from an empty working copy and a fresh ledger holding each live
record's rev and each delete stub's tombstone, so records that are gone from the table vanish
and a message older than the scan, arriving later, is refused as stale.

Both commands hold the lease of every current partition from before the scan until the commit,
so no compactor publishes meanwhile: queued messages wait and are applied afterwards, under the
revs the rebuilt ledgers hold. ``rebuild`` commits each partition with a cycle's transaction;
``reshard`` commits every new partition, the layout and the retirement of the old partitions in
one transaction, which is why a shard count is bounded by DynamoDB's 100 items a transaction.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chroma_compactor.cycle import Outcome, apply, retain, upload
from chroma_compactor.errors import CommitRejected, ConfigurationError, InvalidMessage
from chroma_compactor.forwarder import operation_from_record
from chroma_compactor.history import acquire_for_operator
from chroma_compactor.lease import Heartbeat
from chroma_compactor.local_snapshot import (
    LocalSnapshot,
    chroma_client,
    close_warm,
    get_collection,
)
from chroma_compactor.ops import Operation, OpKind
from chroma_compactor.pointer import pointer_key
from chroma_compactor.shards import MAX_SHARDS, Layout, layout_key
from chroma_compactor.validate import validate_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mypy_boto3_dynamodb import DynamoDBClient

    from chroma_compactor.cycle import Compactor
    from chroma_compactor.lease import Lease
    from chroma_compactor.pointer import Pointer
    from chroma_compactor.snapshot_store import Manifest

log = logging.getLogger(__name__)

_TRANSACTION_ITEMS = 100  # DynamoDB's limit on TransactWriteItems


@dataclass
class ScanResult:
    """Operations by collection: an upsert per live record, a delete per stub."""

    operations: dict[str, list[Operation]] = field(default_factory=lambda: defaultdict(list))
    scanned: int = 0
    skipped: int = 0  # items that are no record: bulk-load run items, rows without embedding
    invalid: int = 0


@dataclass
class RebuildResult:
    collection: str
    shards: int
    versions: dict[str, int] = field(default_factory=dict)  # partition -> committed version
    records: int = 0
    tombstones: int = 0
    failed: int = 0  # records Chroma or the dimension check refused (logged)
    scanned: int = 0


def scan_source(
    ddb: DynamoDBClient,
    table: str,
    collection: str | None,
    segments: int,
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """A parallel, strongly consistent Scan (``segments`` threads), filtered to ``collection``."""
    if segments < 1:
        raise ConfigurationError(f"--segments must be at least 1, not {segments}")

    def one(segment: int) -> ScanResult:
        part = ScanResult()
        kwargs: dict[str, Any] = {
            "TableName": table,
            "Segment": segment,
            "TotalSegments": segments,
            "ConsistentRead": True,
        }
        if collection is not None:
            kwargs["FilterExpression"] = "#c = :c"
            kwargs["ExpressionAttributeNames"] = {"#c": "collection"}
            kwargs["ExpressionAttributeValues"] = {":c": {"S": collection}}
        for page in ddb.get_paginator("scan").paginate(**kwargs):
            for item in page.get("Items", []):
                part.scanned += 1
                _take(item, part)
            if progress is not None:
                progress(segment, part.scanned)
        return part

    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="scan") as pool:
        parts = list(pool.map(one, range(segments)))
    result = ScanResult()
    for part in parts:
        for name, ops in part.operations.items():
            result.operations[name].extend(ops)
        result.scanned += part.scanned
        result.skipped += part.skipped
        result.invalid += part.invalid
    if result.invalid:
        log.warning("%d items are not valid records; see the warnings above", result.invalid)
    return result


def _take(item: dict[str, Any], into: ScanResult) -> None:
    keys = {"collection": item.get("collection"), "id": item.get("id")}
    try:
        if "deleted" in item:  # a stub the writer's conditional delete left: its tombstone
            event = {
                "eventName": "REMOVE",
                "dynamodb": {"Keys": keys, "OldImage": item, "SequenceNumber": "0"},
            }
        else:
            event = {
                "eventName": "INSERT",
                "dynamodb": {"Keys": keys, "NewImage": item, "SequenceNumber": "0"},
            }
        op = operation_from_record(event)
    except InvalidMessage as e:
        into.invalid += 1
        log.warning("not rebuilt: %s", e)
        return
    # A row without an embedding (a run item, an update that found no record) is no record.
    if op is None or (op.op is not OpKind.DELETE and op.embedding is None):
        into.skipped += 1
        return
    into.operations[op.collection].append(op)


def rebuild(
    c: Compactor,
    ddb: DynamoDBClient,
    collection: str,
    segments: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Replace every partition of ``collection`` by one built from the table, as a new version."""
    table = _source_table(c)
    layout = c.layouts.ensure(collection, c.settings.shards_for(collection))
    with _Held(c, layout.partitions) as held:
        scan = scan_source(ddb, table, collection, segments, progress)
        ops = scan.operations.get(collection, [])
        if not ops and all(c.pointers.read(p).version == 0 for p in layout.partitions):
            raise ConfigurationError(
                f"the table has no records of {collection!r} and it has no snapshot: "
                "nothing to rebuild (a misspelt name?)"
            )
        return _publish(c, held, layout, ops, scan.scanned)


def rebuild_all(
    c: Compactor,
    ddb: DynamoDBClient,
    segments: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> list[RebuildResult]:
    """Rebuild every collection the table holds from one scan (``reset --reingest``).

    The leases are taken after the scan: meant for a pipeline just reset, whose queues are empty.
    """
    scan = scan_source(ddb, _source_table(c), None, segments, progress)
    results = []
    for name, ops in sorted(scan.operations.items()):
        layout = c.layouts.ensure(name, c.settings.shards_for(name))
        with _Held(c, layout.partitions) as held:
            results.append(_publish(c, held, layout, ops, len(ops)))
    return results


def reshard(
    c: Compactor,
    ddb: DynamoDBClient,
    collection: str,
    shards: int,
    segments: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Build ``shards`` new partitions from the table and swap every pointer in one transaction."""
    table = _source_table(c)
    old = c.layouts.read(collection)
    if old is None:
        raise ConfigurationError(f"{collection!r} has no layout yet: nothing to reshard")
    check_reshard(old, shards)
    new = Layout(collection, shards)
    with _Held(c, old.partitions + new.partitions) as held:
        scan = scan_source(ddb, table, collection, segments, progress)
        ops = scan.operations.get(collection, [])
        result = RebuildResult(collection, shards, scanned=scan.scanned)
        built = [_build(c, held, new, name, ops, result) for name in new.partitions]
        held.ensure_held()
        _swap(c, ddb, held, old, new, built)
        for manifest, _ in built:
            result.versions[manifest.collection] = manifest.version
            retain(c, manifest.collection, manifest.version, Outcome(manifest.collection))
    return result


def check_reshard(old: Layout, shards: int) -> None:
    if not 1 <= shards <= MAX_SHARDS:
        raise ConfigurationError(f"--shards must be between 1 and {MAX_SHARDS}, not {shards}")
    if shards == old.shards:
        raise ConfigurationError(f"{old.collection!r} already has {shards} shards")
    items = shards + 2 * old.shards + 1
    if items > _TRANSACTION_ITEMS:
        raise ConfigurationError(
            f"resharding {old.collection!r} from {old.shards} to {shards} shards needs one "
            f"transaction of {items} items ({shards} new pointers, {old.shards} lease checks, "
            f"{old.shards} retirements, the layout); DynamoDB allows {_TRANSACTION_ITEMS}"
        )


# -- building -------------------------------------------------------------------------------------


class _Held:
    """The leases of some partitions, all heartbeated, all released on exit.

    Taken in a sorted order, so two operators' rebuilds cannot each hold half.
    """

    def __init__(self, c: Compactor, partitions: list[str]) -> None:
        self._c = c
        self._partitions = sorted(set(partitions))
        self._stack = ExitStack()
        self.beats: dict[str, Heartbeat] = {}

    def __enter__(self) -> _Held:
        c = self._c
        try:
            for name in self._partitions:
                lease = acquire_for_operator(c, name)
                self._stack.callback(_release, c, self, name)
                beat = Heartbeat(c.leases, lease, c.settings.lease_seconds)
                self._stack.enter_context(beat)
                self.beats[name] = beat
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def lease(self, partition: str) -> Lease:
        return self.beats[partition].lease

    def ensure_held(self) -> None:
        for beat in self.beats.values():
            beat.ensure_held()


def _release(c: Compactor, held: _Held, name: str) -> None:
    try:
        c.leases.release(held.lease(name))
    except ClientError as e:
        log.warning("could not release lease of %r: %s", name, e)


def _source_table(c: Compactor) -> str:
    if not c.settings.source_table_name:
        raise ConfigurationError("SOURCE_TABLE_NAME is not set: nothing to rebuild from")
    return c.settings.source_table_name


def _publish(
    c: Compactor, held: _Held, layout: Layout, ops: list[Operation], scanned: int
) -> RebuildResult:
    """Build, validate, upload and commit each partition as its pointer's next version."""
    result = RebuildResult(layout.collection, layout.shards, scanned=scanned)
    for name in layout.partitions:
        manifest, pointer = _build(c, held, layout, name, ops, result)
        held.ensure_held()
        c.pointers.commit(
            c.leases,
            held.lease(name),
            expected_version=pointer.version,
            new_version=manifest.version,
            manifest_key=c.store.manifest_key(name, manifest.version),
            record_count=manifest.record_count,
        )
        result.versions[name] = manifest.version
        retain(c, name, manifest.version, Outcome(name))
    return result


def _build(
    c: Compactor,
    held: _Held,
    layout: Layout,
    partition: str,
    ops: list[Operation],
    result: RebuildResult,
) -> tuple[Manifest, Pointer]:
    """One partition's full state in a fresh working copy, validated and uploaded (not committed).

    The version is one above whatever the pointer holds, retired or not, so a name reused by a
    later layout never overwrites a retained manifest.
    """
    mine = [op for op in ops if layout.partition_of(op.id) == partition]
    pointer = c.pointers.read(partition)
    with _working_copy(c, partition) as snapshot:
        with chroma_client(snapshot.chroma_dir) as client:  # an empty partition has it too
            get_collection(client, partition, c.settings.hnsw_space, create=True)
        applied = apply(c, snapshot, partition, mine)
        for id_, reason in applied.failures.items():
            log.error("record not rebuilt: %s", reason, extra={"collection": partition, "id": id_})
        validate_snapshot(snapshot, partition, applied.records, applied.effects)
        held.ensure_held()
        # parent None: a full manifest; blobs are content-addressed, so unchanged ones are
        # written again under the same keys rather than diffed against the current version.
        manifest = upload(
            c, snapshot, pointer, None, held.lease(partition), applied, Outcome(partition)
        )
    result.records += applied.records
    result.tombstones += applied.tombstones
    result.failed += len(applied.failures)
    return manifest, pointer


@contextmanager
def _working_copy(c: Compactor, partition: str) -> Iterator[LocalSnapshot]:
    """An empty working copy beside the compactor's cache, removed afterwards."""
    snapshot = LocalSnapshot(Path(c.settings.cache_dir) / "rebuild" / partition)
    snapshot.wipe()
    snapshot.ensure()
    try:
        yield snapshot
    finally:
        close_warm(snapshot.chroma_dir)
        shutil.rmtree(snapshot.root, ignore_errors=True)


# -- the swap -------------------------------------------------------------------------------------


def _swap(
    c: Compactor,
    ddb: DynamoDBClient,
    held: _Held,
    old: Layout,
    new: Layout,
    built: list[tuple[Manifest, Pointer]],
) -> None:
    """One transaction: old leases still ours, new pointers set (un-retired), layout moved from
    ``old.shards``, old pointers retired. Nothing is written unless all of it is."""
    table = c.pointers.table_name
    now = str(int(c.clock() * 1000))
    items: list[Any] = [c.leases.condition_check(held.lease(p)) for p in old.partitions]
    for manifest, pointer in built:
        values: dict[str, Any] = {
            ":new": {"N": str(manifest.version)},
            ":key": {"S": c.store.manifest_key(manifest.collection, manifest.version)},
            ":count": {"N": str(manifest.record_count)},
            ":token": {"N": str(held.lease(manifest.collection).token)},
            ":now": {"N": now},
        }
        if pointer.version == 0:
            condition = "attribute_not_exists(version)"
        else:
            condition = "version = :expected"
            values[":expected"] = {"N": str(pointer.version)}
        items.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": pointer_key(manifest.collection)}},
                    "UpdateExpression": (
                        "SET version = :new, manifest_key = :key, record_count = :count, "
                        "#token = :token, updated_at = :now REMOVE retired"
                    ),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#token": "token"},
                    "ExpressionAttributeValues": values,
                }
            }
        )
    items.append(
        {
            "Update": {
                "TableName": table,
                "Key": {"pk": {"S": layout_key(old.collection)}},
                "UpdateExpression": "SET shards = :new",
                "ConditionExpression": "shards = :old",
                "ExpressionAttributeValues": {
                    ":new": {"N": str(new.shards)},
                    ":old": {"N": str(old.shards)},
                },
            }
        }
    )
    for name in set(old.partitions) - set(new.partitions):
        items.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": pointer_key(name)}},
                    "UpdateExpression": "SET retired = :t, updated_at = :now",
                    "ExpressionAttributeValues": {":t": {"BOOL": True}, ":now": {"N": now}},
                }
            }
        )
    try:
        ddb.transact_write_items(TransactItems=items)
    except ClientError as e:
        if e.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons = [r.get("Code", "None") for r in e.response.get("CancellationReasons", [])]
        raise CommitRejected(
            f"reshard of {old.collection!r} rejected, nothing changed: {reasons}"
        ) from e
