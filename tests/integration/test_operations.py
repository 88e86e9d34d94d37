"""Operator commands, run through the CLI in-process against moto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.cli import main
from chroma_compactor.query import query
from chroma_compactor.settings import QueueType
from support import assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline

ROOT = Path(__file__).parents[2]


def _poison_the_dlq(pipeline: Pipeline) -> None:
    pipeline.send(ops.upsert("docs", "a", 1, vector(1)), "garbage")
    pipeline.drain(pipeline.compactor("a"))


def test_status_json_reports_versions_and_exits_1_with_a_full_dlq(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison_the_dlq(cli_env)

    code = main(["status", "--json"])

    status = json.loads(capsys.readouterr().out)
    assert code == 1 and status["healthy"] is False
    (docs,) = status["collections"]
    assert (docs["collection"], docs["version"], docs["record_count"], docs["lease_owner"]) == (
        "docs",
        1,
        1,
        None,
    )
    (queue,) = status["queues"]
    assert queue["dlq_visible"] == 1 and queue["visible"] == 0


def test_status_shows_who_holds_a_lease(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.send(ops.upsert("docs", "a", 1, vector(1)))
    cli_env.drain(cli_env.compactor("a"))
    cli_env.compactor("x").leases.acquire("docs", "lambda-7", seconds=60)

    assert main(["status"]) == 0

    out = capsys.readouterr().out
    assert "lambda-7" in out and "docs" in out


@pytest.mark.parametrize("queue_type", [QueueType.STANDARD, QueueType.FIFO], indirect=True)
def test_redrive_moves_dlq_messages_back(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.send(*(f"bad {i}" for i in range(3)))
    cli_env.drain(cli_env.compactor("a"))
    assert cli_env.queue_depth(cli_env.created.dlq_url)[0] == 3

    assert main(["redrive"]) == 0

    assert "moved 3 messages" in capsys.readouterr().out
    assert cli_env.queue_depth(cli_env.created.dlq_url) == (0, 0)
    assert cli_env.queue_depth()[0] == 3


def test_reset_dry_run_deletes_nothing(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison_the_dlq(cli_env)

    assert main(["reset", "--dry-run"]) == 0

    assert "pointer items" in capsys.readouterr().out
    assert cli_env.compactor("b").pointers.read("docs").version == 1
    assert cli_env.queue_depth(cli_env.created.dlq_url)[0] == 1


def test_reset_without_yes_and_without_a_terminal_refuses(cli_env: Pipeline) -> None:
    cli_env.send(ops.upsert("docs", "a", 1, vector(1)))
    cli_env.drain(cli_env.compactor("a"))

    assert main(["reset"]) == 2

    assert cli_env.compactor("b").pointers.read("docs").version == 1


def test_reset_yes_reingest_rebuilds_each_collection_as_version_1(
    cli_env: Pipeline, reader: Reader
) -> None:
    for i in range(8):
        cli_env.put("docs", f"d{i}", rev=1, seed=i, document=f"doc {i}", metadata={"i": i})
        cli_env.put("notes", f"n{i}", rev=1, seed=50 + i)
    cli_env.forward_stream()
    cli_env.drain(cli_env.compactor("a"))
    cli_env.put("docs", "late", rev=1, seed=99)  # in the table, never compacted
    _poison_the_dlq(cli_env)

    assert main(["reset", "--yes", "--reingest"]) == 0

    pointers = cli_env.compactor("b").pointers
    assert pointers.read("docs").version == 1 and pointers.read("notes").version == 1
    assert cli_env.queue_depth() == (0, 0)
    assert cli_env.queue_depth(cli_env.created.dlq_url) == (0, 0)
    assert reader.store.list_versions("docs") == [1]
    for collection in ("docs", "notes"):
        assert_same_records(snapshot_state(reader, collection), cli_env.table_state(collection))


def test_query_by_vector_finds_the_record_itself_first(pipeline: Pipeline, reader: Reader) -> None:
    pipeline.send(
        *(
            ops.upsert(
                "docs", f"id{i}", 1, vector(i), document=f"d{i}", metadata={"even": i % 2 == 0}
            )
            for i in range(20)
        )
    )
    pipeline.drain(pipeline.compactor("a"))

    hits = query(reader, "docs", vector=vector(7).tolist(), k=3)

    assert hits[0].id == "id7" and hits[0].distance == pytest.approx(0, abs=1e-5)
    assert hits[0].document == "d7" and len(hits) == 3


def test_query_by_id_with_a_filter(pipeline: Pipeline, reader: Reader) -> None:
    pipeline.send(
        *(
            ops.upsert("docs", f"id{i}", 1, vector(i), metadata={"even": i % 2 == 0})
            for i in range(20)
        )
    )
    pipeline.drain(pipeline.compactor("a"))

    hits = query(reader, "docs", id="id4", k=50, where={"even": True})

    assert hits[0].id == "id4"
    assert len(hits) == 10 and all(h.metadata == {"even": True} for h in hits)


@pytest.mark.parametrize("args", [{}, {"vector": [0.0] * 8, "id": "x"}])
def test_query_needs_exactly_one_of_vector_and_id(
    pipeline: Pipeline, reader: Reader, args: dict[str, object]
) -> None:
    from chroma_compactor.errors import CompactorError

    with pytest.raises(CompactorError, match="exactly one"):
        query(reader, "docs", **args)  # type: ignore[arg-type]


def test_query_command_prints_json(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cli_env.send(*(ops.upsert("docs", f"id{i}", 1, vector(i)) for i in range(5)))
    cli_env.drain(cli_env.compactor("a"))
    (tmp_path / "v.json").write_text(json.dumps(vector(2).tolist()))

    assert (
        main(["query", "docs", "--vector-file", str(tmp_path / "v.json"), "--k", "2", "--json"])
        == 0
    )

    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["id"] == "id2" and len(hits) == 2


def test_a_missing_setting_is_one_clear_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONTROL_TABLE_NAME", raising=False)
    monkeypatch.delenv("SNAPSHOT_BUCKET", raising=False)

    assert main(["status"]) == 2

    err = capsys.readouterr().err
    assert "CONTROL_TABLE_NAME" in err and "Traceback" not in err


def test_reset_script_help_runs_without_aws() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reset_chromadb.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        result.returncode == 0
        and "--reingest" in result.stdout
        and "AWS_ENDPOINT_URL" not in result.stderr
    )
