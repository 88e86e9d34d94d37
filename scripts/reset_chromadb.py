#!/usr/bin/env python3
"""Reset a chroma-compactor pipeline to empty, and optionally re-ingest it from the source table.

Purges the compaction queue(s) and their DLQs, deletes lease, pointer and stream-checkpoint items
from the control table and every snapshot version and blob, then (with --reingest) rebuilds each
collection from a scan of the source table as a new version 1.

It reads the same environment variables as the Lambdas (CONTROL_TABLE_NAME, SNAPSHOT_BUCKET,
COMPACTION_QUEUE_URL or COMPACTION_QUEUE_URLS, SOURCE_TABLE_NAME, ...) and works against AWS as
it is, or against any local endpoint named by AWS_ENDPOINT_URL (for a local stack:
`eval "$(chroma-compactor local env)"`).
This is `chroma-compactor reset`; both run the same code.
"""

from __future__ import annotations

import argparse
import sys

from chroma_compactor.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted, delete nothing"
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--reingest", action="store_true", help="rebuild every collection from the table"
    )
    args = parser.parse_args()
    flags = [f"--{name.replace('_', '-')}" for name, on in vars(args).items() if on]
    sys.exit(main(["reset", *flags]))
