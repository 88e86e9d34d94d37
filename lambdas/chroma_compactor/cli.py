"""``chroma-compactor``: run the pipeline locally, steer a running one, read what it built.

Commands other than ``demo`` and ``local`` read the pipeline's names from the environment the
Lambdas read (``CONTROL_TABLE_NAME``, ``SNAPSHOT_BUCKET``, ``COMPACTION_QUEUE_URL``, ...), so they
work against AWS as they are and against a local stack after
``eval "$(chroma-compactor local env)"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from rich.console import Console

from chroma_compactor.errors import CompactorError
from chroma_compactor.settings import QueueType, Settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from chroma_compactor.cycle import Compactor
    from chroma_compactor.reader import Reader
    from chroma_compactor.wiring import Clients

# One cycle by hand gets the same budget as the Lambda function.
_CYCLE_SECONDS = 900
DEFAULT_DATA_DIR = Path(".chroma-compactor")
DEFAULT_PORT = 4566


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = Console(stderr=True)
    try:
        if args.stack_outputs is not None:
            _load_stack_outputs(args.stack_outputs)
        return int(args.run(args))
    except EndpointConnectionError as e:
        err.print(
            f"[red]error:[/] cannot reach {e.kwargs.get('endpoint_url')}: is the local stack "
            "running (`chroma-compactor local up`) or AWS_ENDPOINT_URL wrong?"
        )
    except (CompactorError, ClientError, BotoCoreError) as e:
        err.print(f"[red]error:[/] {e}", markup=True, highlight=False)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chroma-compactor",
        description=(__doc__ or "").split("\n\n")[0].strip("`"),
        epilog="Run `chroma-compactor COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=package_version("chroma-compactor"))
    parser.add_argument(
        "--stack-outputs",
        metavar="FILE",
        type=Path,
        help="read the pipeline's names from `pulumi stack output --json > FILE` ('-': stdin) "
        "instead of the environment (the outputs are named like the environment variables)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the whole pipeline locally on sample data (make run)")
    _local_options(demo, temporary=True)
    demo.add_argument("--records", type=int, default=1500, help="records per collection")
    demo.set_defaults(run=_demo)

    local = sub.add_parser("local", help="local mode: moto's server + real ChromaDB")
    local_sub = local.add_subparsers(required=True, metavar="ACTION")
    up = local_sub.add_parser("up", help="start local mode and keep it running until Ctrl-C")
    _local_options(up, temporary=False)
    up.add_argument("--no-workers", action="store_true", help="server and resources only")
    up.set_defaults(run=_local_up)
    env = local_sub.add_parser("env", help="print `export` lines pointing at a running local stack")
    env.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    env.set_defaults(run=_local_env)

    compact = sub.add_parser("compact", help="run one compaction cycle per configured queue")
    compact.add_argument("--once", action="store_true", required=True, help="one cycle, then exit")
    compact.add_argument("--json", action="store_true", help="print the report as JSON")
    compact.add_argument(
        "--budget",
        type=float,
        default=_CYCLE_SECONDS,
        metavar="SECONDS",
        help=f"time the cycle may take, as a Lambda timeout would (default {_CYCLE_SECONDS}, "
        "at least 30); its messages stay hidden this long plus VISIBILITY_MARGIN_SECONDS",
    )
    compact.set_defaults(run=_compact)

    forward = sub.add_parser("forward", help="forward new stream records to the queue, once")
    forward.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    forward.add_argument("--json", action="store_true", help="print the result as JSON")
    forward.set_defaults(run=_forward)

    status = sub.add_parser(
        "status",
        help="pointers, leases, queues; exit 1 on a problem (see --help)",
        description="Each collection's version, records, pointer age, lease and latest failure; "
        "each queue's depth, oldest message and DLQ. Exits 1 when there is a problem: a DLQ "
        "that is not empty, a collection whose cycles fail (e.g. a corrupt snapshot blob or a "
        "failed validation), a lease held longer than any invocation runs, or messages older "
        "than 5 minutes with no commit since they arrived.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)

    query = sub.add_parser("query", help="nearest neighbours in the latest snapshot")
    query.add_argument("collection")
    target = query.add_mutually_exclusive_group(required=True)
    target.add_argument("--vector-file", type=Path, help="JSON list of numbers")
    target.add_argument("--id", help="use this record's embedding as the query")
    query.add_argument("--k", type=int, default=10, help="how many results (default 10)")
    query.add_argument("--where", type=json.loads, help='metadata filter, e.g. \'{"lang": "en"}\'')
    query.add_argument("--json", action="store_true", help="machine-readable output")
    query.set_defaults(run=_query)

    export = sub.add_parser("export", help="write a snapshot stock chromadb.PersistentClient opens")
    export.add_argument("collection")
    export.add_argument(
        "--version", type=int, dest="snapshot_version", help="a retained version (default: current)"
    )
    export.add_argument("--out", type=Path, required=True, help="an empty or new directory")
    export.set_defaults(run=_export)

    bench = sub.add_parser(
        "bench",
        help="the seed design vs ours vs the limit, side by side (make bench)",
        description="Runs, on the same data and machine, the seed configuration (FIFO, 10 "
        "messages per cycle, whole snapshot moved every cycle, no cache), ours (standard and "
        "FIFO) and the limit (the same final upserts straight into a PersistentClient), with an "
        "S3 network model on every S3 request; writes docs/performance.{md,json,png}.",
    )
    bench.add_argument("--updates", type=int, default=10_000, help="updates per run (10000)")
    bench.add_argument("--seed-updates", type=int, default=300, help="for the slow seed (300)")
    bench.add_argument(
        "--fifo-updates", type=int, default=300, help="for ours on one FIFO group (300)"
    )
    bench.add_argument("--records", type=int, default=10_000, help="base collection size")
    bench.add_argument("--dim", type=int, default=384, help="embedding dimension (384)")
    bench.add_argument("--latency-ms", type=float, default=25.0, help="S3 first byte (25 ms)")
    bench.add_argument(
        "--bandwidth-mbps", type=float, default=90.0, help="S3 MB/s, shared by streams (90)"
    )
    bench.add_argument(
        "--api-latency-ms", type=float, default=10.0, help="per SQS/DynamoDB request (10 ms)"
    )
    bench.add_argument("--docs", type=Path, default=Path("docs"), help="where figures go")
    bench.add_argument(
        "--fixtures", type=Path, default=Path("data/bench"), help="cache of base snapshots"
    )
    bench.add_argument(
        "--scale",
        action="store_true",
        help="instead: one 100-update cycle on 10K/50K/100K x 384 and 100K x 1536, and query "
        "latency at 100K x 384 on 1 and 4 shards (make bench-scale)",
    )
    bench.set_defaults(run=_bench)

    redrive = sub.add_parser("redrive", help="move DLQ messages back to their main queue")
    redrive.add_argument("--queue-url", help="main queue (default: every configured queue)")
    redrive.set_defaults(run=_redrive)

    rebuild = sub.add_parser(
        "rebuild", help="rebuild a collection's snapshots from a parallel scan of the table"
    )
    rebuild.add_argument("collection")
    _scan_options(rebuild)
    rebuild.set_defaults(run=_rebuild)

    reshard = sub.add_parser(
        "reshard",
        help="rebuild a collection as M shards from the table, swapped in one transaction",
    )
    reshard.add_argument("collection")
    reshard.add_argument("--shards", type=int, required=True, help="the new shard count M")
    _scan_options(reshard)
    reshard.set_defaults(run=_reshard)

    partition_help = (
        "a collection, or one shard of a sharded one (<collection>.s<i>-of-<n>): "
        "versions are numbered per shard"
    )
    versions = sub.add_parser("versions", help="list a collection's retained snapshot versions")
    versions.add_argument("collection", help=partition_help)
    versions.add_argument("--json", action="store_true", help="print JSON")
    versions.set_defaults(run=_versions)

    rollback = sub.add_parser(
        "rollback",
        help="publish a retained version's content as the next version (see --help)",
        description="Publish retained version V's content as a new version (the pointer never "
        "moves backwards), under the lease, by the pointer CAS. The snapshot's ledger becomes "
        "V's: messages newer than V are applied again if they arrive again, but writes whose "
        "messages were already consumed stay out of the snapshot until written again. "
        "`rebuild` is the exact alternative: it rebuilds the table's current state.",
    )
    rollback.add_argument("collection", help=partition_help)
    rollback.add_argument("--to", type=int, required=True, metavar="V", help="retained version")
    rollback.set_defaults(run=_rollback)

    gc = sub.add_parser(
        "gc",
        help="apply retention now: keep the last RETAIN_VERSIONS versions, delete unnamed blobs",
        description="Delete versions older than the last RETAIN_VERSIONS and the blobs no "
        "retained manifest names. A blob younger than the grace period is kept (an in-flight "
        "cycle may be about to name it), and so are versions above the pointer. Partitions a "
        "reshard retired keep no version: their snapshots go too.",
    )
    gc.add_argument("collection", nargs="?", help="one partition (default: every one)")
    gc.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    gc.add_argument(
        "--grace-seconds", type=float, help="keep unnamed blobs younger than this (3600)"
    )
    gc.set_defaults(run=_gc)

    backup = sub.add_parser("backup", help="copy one version, self-contained, to DIR or s3://")
    backup.add_argument("collection", help=partition_help)
    backup.add_argument("--to", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    backup.add_argument("--snapshot-version", type=int, help="version (default: the current one)")
    backup.set_defaults(run=_backup)

    restore = sub.add_parser(
        "restore",
        help="check a backup, then publish it as its collection's next version",
        description="Verify every blob of a backup against its index, then commit its content "
        "as the next version of the collection it was taken from (in this stack or another), "
        "under the lease, like a rollback.",
    )
    restore.add_argument("--from", dest="source", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    restore.set_defaults(run=_restore)

    reset = sub.add_parser(
        "reset", help="empty the pipeline: queues, leases, snapshots, pointers (see --help)"
    )
    reset.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.add_argument(
        "--reingest", action="store_true", help="then rebuild every collection from the table"
    )
    reset.set_defaults(run=_reset)
    return parser


def _local_options(parser: argparse.ArgumentParser, temporary: bool) -> None:
    parser.add_argument("--port", type=int, default=0 if temporary else DEFAULT_PORT)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None if temporary else DEFAULT_DATA_DIR,
        help="where state lives between runs"
        + (" (default: a temporary one)" if temporary else ""),
    )
    parser.add_argument(
        "--queue-type", type=QueueType, choices=list(QueueType), default=QueueType.STANDARD
    )


# -- commands ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from chroma_compactor.demo import run_demo

    return run_demo(
        data_dir=args.data_dir, port=args.port, queue_type=args.queue_type, records=args.records
    )


def _local_up(args: argparse.Namespace) -> int:
    from chroma_compactor.local_stack import run_local

    return run_local(
        data_dir=args.data_dir,
        port=args.port,
        queue_type=args.queue_type,
        workers=not args.no_workers,
    )


def _local_env(args: argparse.Namespace) -> int:
    from chroma_compactor.local_stack import StackInfo

    info = StackInfo.load(args.data_dir)
    for name, value in sorted(info.environment().items()):
        print(f"export {name}={_shell_quote(value)}")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from chroma_compactor.cycle import run_cycle
    from chroma_compactor.queue import WorkQueue
    from chroma_compactor.wiring import build_compactor

    settings, clients = _from_env()
    compactor = build_compactor(settings, clients)
    results: list[dict[str, Any]] = []
    for url in settings.queue_urls():
        deadline = time.monotonic() + args.budget
        # Stand in for the event source mapping: the first receive is the "event".
        event = WorkQueue(compactor.sqs, url).fetch_more(
            settings.batch_size,
            float(settings.batching_window) + 1,
            int(args.budget + settings.visibility_margin_seconds),
        )
        report = run_cycle(compactor, event, url, deadline)
        results.append(
            {
                "queue_url": url,
                "received": len(event),
                "fetched": report.fetched,
                "rejected": report.rejected,
                "outcomes": [vars(o) for o in report.outcomes],
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(
                f"{r['queue_url']}: {r['received'] + r['fetched']} messages, {r['rejected']} rejected"
            )
            for o in r["outcomes"]:
                state = (
                    f"committed v{o['committed_version']}"
                    if o["committed_version"]
                    else (o["abandoned"] or "nothing new to publish")
                )
                print(
                    f"  {o['collection']}: {state}; applied {o['applied']}, stale {o['stale']}, "
                    f"not found {o['not_found']}, failed {o['failed']}, records {o['records']}"
                )
    return 1 if any(o["abandoned"] for r in results for o in r["outcomes"]) else 0


def _forward(args: argparse.Namespace) -> int:
    from chroma_compactor.stream_checkpoint import forward_once

    settings, clients = _from_env()
    result = forward_once(clients, settings)
    if args.json:
        print(json.dumps(vars(result)))
    else:
        print(
            f"forwarded {result.sent} records, skipped {result.skipped}, "
            f"failed {len(result.failed_sequence_numbers)}"
        )
    return 1 if result.failed_sequence_numbers else 0


def _status(args: argparse.Namespace) -> int:
    from chroma_compactor.status import collect_status, render_status

    settings, clients = _from_env()
    status = collect_status(clients, settings)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        render_status(status, Console())
    return 0 if status.healthy else 1


def _query(args: argparse.Namespace) -> int:
    from chroma_compactor.query import query

    settings, clients = _from_env()
    vector = json.loads(args.vector_file.read_text()) if args.vector_file else None
    hits = query(
        _reader(settings, clients),
        args.collection,
        vector=vector,
        id=args.id,
        k=args.k,
        where=args.where,
    )
    if args.json:
        print(json.dumps([vars(h) for h in hits], indent=2))
    else:
        from rich.table import Table

        table = Table("id", "distance", "document", "metadata")
        for h in hits:
            table.add_row(
                h.id, f"{h.distance:.4f}", (h.document or "")[:60], json.dumps(h.metadata)
            )
        Console().print(table)
    return 0


def _export(args: argparse.Namespace) -> int:
    settings, clients = _from_env()
    manifest = _reader(settings, clients).export(args.collection, args.out, args.snapshot_version)
    print(
        f"exported {args.collection!r} version {manifest.version} "
        f"({manifest.record_count} records) to {args.out}"
    )
    return 0


def _redrive(args: argparse.Namespace) -> int:
    from chroma_compactor.redrive import redrive

    settings, clients = _from_env()
    for url in [args.queue_url] if args.queue_url else settings.queue_urls():
        moved = redrive(clients.sqs, url)
        print(f"moved {moved} messages from the DLQ back to {url}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from chroma_compactor.reset import execute_reset, plan_reset, reingest

    settings, clients = _from_env()
    plan = plan_reset(clients, settings)
    console = Console()
    console.print(plan.describe())
    if args.dry_run:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            console.print("[red]refusing to reset without --yes (no terminal to ask)[/]")
            return 2
        if input("Delete all of this? Type 'yes': ").strip() != "yes":
            console.print("nothing deleted")
            return 1
    execute_reset(clients, settings, plan)
    console.print("reset done")
    if args.reingest:
        for collection, version in reingest(clients, settings).items():
            console.print(f"re-ingested {collection!r} as version {version}")
    return 0


def _scan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segments", type=int, default=4, help="parallel scan segments (4)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _rebuild(args: argparse.Namespace) -> int:
    from chroma_compactor.rebuild import rebuild

    return _run_scan_command(
        args,
        f"Replace every snapshot of {args.collection!r} by one built from the source table?",
        lambda c, clients, progress: rebuild(
            c, clients.dynamodb, args.collection, args.segments, progress
        ),
    )


def _reshard(args: argparse.Namespace) -> int:
    from chroma_compactor.rebuild import check_reshard, reshard
    from chroma_compactor.shards import LayoutTable

    settings, clients = _from_env()
    layouts = LayoutTable(clients.dynamodb, settings.control_table_name)
    old = layouts.read(args.collection)
    if old is None:
        raise CompactorError(f"{args.collection!r} has no layout yet: nothing to reshard")
    check_reshard(old, args.shards)
    return _run_scan_command(
        args,
        f"Reshard {args.collection!r} from {old.shards} to {args.shards} shards? Compaction of "
        "it pauses meanwhile; afterwards set its collectionShards to "
        f"{args.shards} in the stack's config so FIFO message groups match.",
        lambda c, clients, progress: reshard(
            c, clients.dynamodb, args.collection, args.shards, args.segments, progress
        ),
    )


def _run_scan_command(args: argparse.Namespace, question: str, run: Any) -> int:
    """Confirm, then run a rebuild-like command with scan progress on stderr."""
    from chroma_compactor.wiring import build_compactor

    settings, clients = _from_env()
    console = Console()
    if not args.yes:
        if not sys.stdin.isatty():
            console.print("[red]refusing without --yes (no terminal to ask)[/]")
            return 2
        if input(f"{question} Type 'yes': ").strip() != "yes":
            console.print("nothing changed")
            return 1
    with _ScanProgress(args.segments) as progress:
        result = run(build_compactor(settings, clients), clients, progress)
    for partition, version in sorted(result.versions.items()):
        console.print(f"rebuilt {result.collection!r}: {partition} is version {version}")
    console.print(
        f"{result.scanned} items scanned, {result.records} records, {result.tombstones} "
        f"tombstones, {result.failed} refused (see the log), {result.shards} shard(s)"
    )
    return 0


class _ScanProgress:
    """Items scanned per segment on stderr: a live bar on a terminal, plain lines otherwise."""

    def __init__(self, segments: int) -> None:
        from rich.progress import Progress

        self._err = Console(stderr=True)
        self._bar = Progress(console=self._err) if self._err.is_terminal else None
        self._tasks = (
            [self._bar.add_task(f"segment {i}", total=None) for i in range(segments)]
            if self._bar is not None
            else []
        )

    def __enter__(self) -> _ScanProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, segment: int, scanned: int) -> None:
        if self._bar is not None:
            self._bar.update(self._tasks[segment], completed=scanned)
        else:
            print(f"segment {segment}: {scanned} items scanned", file=sys.stderr, flush=True)


# -- helpers -------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    from chroma_compactor.bench import report, suite

    plan = suite.Plan(
        updates=args.updates,
        seed_updates=args.seed_updates,
        fifo_updates=args.fifo_updates,
        base_records=args.records,
        dim=args.dim,
        latency_ms=args.latency_ms,
        bandwidth_mbps=args.bandwidth_mbps,
        api_latency_ms=args.api_latency_ms,
    )

    def progress(line: str) -> None:
        print(line, flush=True)

    if args.scale:
        summary = suite.run_scale(plan, args.fixtures, progress)
    else:
        summary = suite.run(plan, args.fixtures, progress)
    args.docs.mkdir(parents=True, exist_ok=True)
    print(report.tables(report.write(summary, args.docs)))
    return 0


def _versions(args: argparse.Namespace) -> int:
    from chroma_compactor.history import list_versions

    c, _, partition = _partition_of(args.collection)
    found = list_versions(c.store, c.pointers, partition)
    if args.json:
        print(json.dumps([v.__dict__ for v in found], indent=2))
        return 0
    if not found:
        print(f"{partition!r} has no versions")
        return 0
    from rich.table import Table

    table = Table("", "version", "created", "records", "bytes", "token", "note")
    for v in found:
        table.add_row(
            "*" if v.current else "",
            str(v.version),
            v.created_at,
            str(v.record_count),
            f"{v.bytes:,}",
            str(v.fencing_token),
            v.note,
        )
    Console().print(table)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from chroma_compactor.history import rollback

    c, _, partition = _partition_of(args.collection)
    manifest = rollback(c, partition, args.to)
    print(
        f"{partition!r} is at version {manifest.version}, with version {args.to}'s content "
        f"({manifest.record_count} records)"
    )
    return 0


def _gc(args: argparse.Namespace) -> int:
    from chroma_compactor.history import collect, partition_for
    from chroma_compactor.wiring import build_compactor

    c = build_compactor(*_from_env())
    retired = set(c.pointers.retired())
    partitions = (
        [partition_for(c.layouts, args.collection)]
        if args.collection
        else c.pointers.collections() + sorted(retired)
    )
    verb = "would delete" if args.dry_run else "deleted"
    for partition in partitions:
        result = collect(
            c,
            partition,
            dry_run=args.dry_run,
            grace_seconds=args.grace_seconds,
            retired=partition in retired,
        )
        versions = f"{len(result.versions)} versions" + (
            f" {result.versions}" if result.versions else ""
        )
        note = " (retired by a reshard)" if partition in retired else ""
        print(f"{partition}{note}: {verb} {versions} and {len(result.blobs)} blobs")
        if args.dry_run:
            for blob in result.blobs:
                print(f"  blob {blob}")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from chroma_compactor.backup import backup, place

    c, clients, partition = _partition_of(args.collection)
    to = place(args.to, clients.s3)
    index = backup(c.store, c.pointers, partition, to, args.snapshot_version)
    print(
        f"backed up {partition!r} version {index.version} ({index.record_count} records, "
        f"{len(index.blobs)} blobs, {sum(index.blobs.values()):,} bytes) to {to}"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    from chroma_compactor.backup import place, restore
    from chroma_compactor.wiring import build_compactor

    settings, clients = _from_env()
    manifest = restore(build_compactor(settings, clients), place(args.source, clients.s3))
    print(
        f"restored {manifest.collection!r} as version {manifest.version} "
        f"({manifest.record_count} records) from {args.source}"
    )
    return 0


def _load_stack_outputs(path: Path) -> None:
    """Pulumi's outputs carry the Settings' environment names; they win over the environment."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as e:
        raise CompactorError(f"{path} is not the JSON of `pulumi stack output --json`: {e}") from e
    if not isinstance(outputs, dict):
        raise CompactorError(f"{path} is not the JSON of `pulumi stack output --json`")
    for name, value in outputs.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            os.environ[name] = str(value)


def _partition_of(name: str) -> tuple[Compactor, Clients, str]:
    """For the version commands: the pipeline, and the one partition ``name`` designates."""
    from chroma_compactor.history import partition_for
    from chroma_compactor.wiring import build_compactor

    settings, clients = _from_env()
    c = build_compactor(settings, clients)
    return c, clients, partition_for(c.layouts, name)


def _from_env() -> tuple[Settings, Clients]:
    from chroma_compactor.wiring import Clients

    return Settings.from_env(), Clients.create()


def _reader(settings: Settings, clients: Clients) -> Reader:
    from chroma_compactor.wiring import build_reader

    return build_reader(settings, clients)


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)
