"""``chroma-compactor``: run a worker step by hand or read what the pipeline built.

Every command reads the pipeline's names from the same environment the Lambdas read
(``SOURCE_TABLE_NAME``, ``CONTROL_TABLE_NAME``, ``SNAPSHOT_BUCKET``, ``COMPACTION_QUEUE_URL``...);
``AWS_ENDPOINT_URL`` points it at a local endpoint instead of AWS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chroma_compactor.errors import CompactorError
from chroma_compactor.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Sequence

# One cycle by hand gets the same budget as the Lambda function.
_CYCLE_SECONDS = 900


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (CompactorError, ClientError, BotoCoreError) as e:
        print(f"chroma-compactor: error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chroma-compactor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=package_version("chroma-compactor"))
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    compact = sub.add_parser("compact", help="run compaction cycles against the configured queues")
    compact.add_argument(
        "--once", action="store_true", required=True, help="run one cycle per queue and exit"
    )
    compact.add_argument("--json", action="store_true", help="print the report as JSON")
    compact.set_defaults(run=_compact)

    export = sub.add_parser(
        "export", help="write a snapshot that stock chromadb.PersistentClient opens"
    )
    export.add_argument("collection")
    export.add_argument(
        "--version", type=int, dest="snapshot_version", help="a retained version (default: current)"
    )
    export.add_argument("--out", type=Path, required=True, help="an empty or new directory")
    export.set_defaults(run=_export)
    return parser


def _compact(args: argparse.Namespace) -> int:
    from chroma_compactor.cycle import run_cycle
    from chroma_compactor.queue import WorkQueue
    from chroma_compactor.wiring import Clients, build_compactor

    settings = Settings.from_env()
    compactor = build_compactor(settings, Clients.create())
    results: list[dict[str, Any]] = []
    for url in settings.queue_urls():
        deadline = time.monotonic() + _CYCLE_SECONDS
        # Stand in for the event source mapping: the first receive is the "event".
        event = WorkQueue(compactor.sqs, url).fetch_more(10, 1.0, _CYCLE_SECONDS + 60)
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
                    else (o["abandoned"] or "nothing to publish")
                )
                print(
                    f"  {o['collection']}: {state}; applied {o['applied']}, stale {o['stale']}, "
                    f"not found {o['not_found']}, failed {o['failed']}, records {o['records']}"
                )
    abandoned = any(o["abandoned"] for r in results for o in r["outcomes"])
    return 1 if abandoned else 0


def _export(args: argparse.Namespace) -> int:
    from chroma_compactor.reader import Reader
    from chroma_compactor.wiring import Clients, build_compactor

    settings = Settings.from_env()
    c = build_compactor(settings, Clients.create())
    reader = Reader(c.pointers, c.store, Path(settings.cache_dir) / "reader")
    manifest = reader.export(args.collection, args.out, args.snapshot_version)
    print(
        f"exported {args.collection!r} version {manifest.version} ({manifest.record_count} records) to {args.out}"
    )
    return 0
