"""Local mode end to end: separate processes write, forward, compact and export."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import chromadb
import numpy as np
import pytest
from e2e_support import put_records, start_local, table_ids

if TYPE_CHECKING:
    from pathlib import Path

    from e2e_support import LocalProcess

pytestmark = pytest.mark.e2e


def test_writes_forwarded_and_compacted_by_hand_export_equal_the_table(
    local: LocalProcess, tmp_path: Path
) -> None:
    ddb = local.client("dynamodb")
    table = local.env["SOURCE_TABLE_NAME"]
    put_records(ddb, table, "notes", range(40))
    ddb.delete_item(TableName=table, Key={"collection": {"S": "notes"}, "id": {"S": "n-3"}})

    local.cli("forward", "--once")
    report = json.loads(local.cli("compact", "--once", "--json").stdout)
    local.cli("export", "notes", "--out", str(tmp_path / "out"))

    assert report[0]["outcomes"][0]["committed_version"] == 1
    client = chromadb.PersistentClient(path=str(tmp_path / "out"))
    got = client.get_collection("notes").get(include=["embeddings"])
    assert sorted(got["ids"]) == sorted(table_ids(ddb, table, "notes"))
    assert np.asarray(got["embeddings"]).shape == (39, 8)
    client.close()


def test_a_restarted_stack_finds_its_snapshots_and_carries_on(
    local: LocalProcess, tmp_path: Path
) -> None:
    ddb = local.client("dynamodb")
    table = local.env["SOURCE_TABLE_NAME"]
    put_records(ddb, table, "notes", range(10))
    local.cli("forward", "--once")
    local.cli("compact", "--once")
    local.stop()

    again = start_local(local.data_dir)
    try:
        ddb = again.client("dynamodb")
        put_records(ddb, table, "notes", range(10, 15))
        again.cli("forward", "--once")
        report = json.loads(again.cli("compact", "--once", "--json").stdout)
        again.cli("export", "notes", "--out", str(tmp_path / "out"))
    finally:
        again.stop()

    assert report[0]["outcomes"][0]["committed_version"] == 2
    client = chromadb.PersistentClient(path=str(tmp_path / "out"))
    assert client.get_collection("notes").count() == 15
    client.close()


def test_ctrl_c_stops_a_stack_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A non-interactive shell's background job inherits SIGINT ignored (`make test &`, CI)."""
    local = start_local(tmp_path / "data", sigint_ignored=True)

    local.stop(timeout=60)

    assert "stopping: saving state" in local.log.read_text()


def test_local_env_refuses_a_stack_that_is_not_running(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "chroma_compactor", "local", "env", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "no local stack" in result.stderr and "local up" in result.stderr


def test_status_and_redrive_against_the_local_server(local: LocalProcess) -> None:
    sqs = local.client("sqs")
    sqs.send_message(QueueUrl=local.env["COMPACTION_QUEUE_URL"], MessageBody="not json")
    for _ in range(4):  # three failed receives, then SQS moves it to the DLQ
        local.cli("compact", "--once", check=False)

    unhealthy = local.cli("status", "--json", check=False)
    moved = local.cli("redrive")
    healthy = local.cli("status", "--json", check=False)

    assert (
        unhealthy.returncode == 1 and json.loads(unhealthy.stdout)["queues"][0]["dlq_visible"] == 1
    )
    assert "moved 1 messages" in moved.stdout
    assert healthy.returncode == 0


def test_the_demo_passes_and_reports_what_it_wrote() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "chroma_compactor", "demo", "--records", "60"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout
    assert "articles: snapshot of 54 records equals the table" in result.stdout
    assert "products: snapshot of 54 records equals the table" in result.stdout


def test_an_unreachable_endpoint_is_one_clear_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
        CONTROL_TABLE_NAME="c",
        SNAPSHOT_BUCKET="b",
        COMPACTION_QUEUE_URL="http://127.0.0.1:9/000000000000/q",
    )
    result = subprocess.run(
        [sys.executable, "-m", "chroma_compactor", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2
    assert "cannot reach" in result.stderr and "Traceback" not in result.stderr
