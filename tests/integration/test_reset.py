"""plan_reset / execute_reset / reingest, `chroma-compactor reset` and scripts/reset_chromadb.py."""

from __future__ import annotations

import logging
import runpy
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chroma_compactor import ops
from chroma_compactor.cli import main
from chroma_compactor.errors import ConfigurationError
from chroma_compactor.reset import execute_reset, plan_reset, reingest
from support import assert_same_records, snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline

SCRIPT = Path(__file__).parents[2] / "scripts" / "reset_chromadb.py"


@pytest.fixture
def used(pipeline: Pipeline) -> Pipeline:
    """A pipeline that has run: two collections compacted, one message queued, one in the DLQ."""
    for i in range(4):
        pipeline.put("docs", f"d{i}", rev=1, seed=i, document=f"doc {i}", metadata={"i": i})
        pipeline.put("notes", f"n{i}", rev=1, seed=50 + i)
    pipeline.forward_stream()
    pipeline.send("garbage")
    pipeline.drain(pipeline.compactor("a"))
    pipeline.send(ops.upsert("docs", "queued", 1, vector(9)))
    assert pipeline.queue_depth() == (1, 0)
    assert pipeline.queue_depth(pipeline.created.dlq_url) == (1, 0)
    return pipeline


def _control_keys(pipeline: Pipeline) -> list[str]:
    items = pipeline.clients.dynamodb.scan(TableName=pipeline.names.control_table)["Items"]
    return sorted(item["pk"]["S"] for item in items)


def _snapshot_objects(pipeline: Pipeline, prefix: str = "snapshots/") -> int:
    pages = pipeline.clients.s3.get_paginator("list_objects_v2").paginate(
        Bucket=pipeline.names.bucket, Prefix=prefix
    )
    return sum(len(page.get("Contents", [])) for page in pages)


def _reset(pipeline: Pipeline) -> None:
    execute_reset(
        pipeline.clients, pipeline.settings, plan_reset(pipeline.clients, pipeline.settings)
    )


# -- the plan --------------------------------------------------------------------------------------


def test_the_plan_counts_messages_in_each_queue_and_dlq(used: Pipeline) -> None:
    plan = plan_reset(used.clients, used.settings)

    assert plan.queues == {used.created.queue_url: 1, used.created.dlq_url: 1}


def test_the_plan_names_the_lease_and_pointer_items(used: Pipeline) -> None:
    plan = plan_reset(used.clients, used.settings)

    assert {"lease#docs", "lease#notes", "pointer#docs", "pointer#notes"} <= set(plan.control_keys)


def test_the_plan_counts_the_snapshot_objects(used: Pipeline) -> None:
    plan = plan_reset(used.clients, used.settings)

    assert plan.snapshot_objects == _snapshot_objects(used) > 0


def test_the_description_lists_queues_items_and_objects_for_a_human(used: Pipeline) -> None:
    text = plan_reset(used.clients, used.settings).describe()

    assert used.created.queue_url in text and used.created.dlq_url in text
    assert "pointer items" in text and "lease items" in text
    assert f"s3://{used.names.bucket}/snapshots/" in text


def test_making_a_plan_deletes_nothing(used: Pipeline) -> None:
    keys, objects = _control_keys(used), _snapshot_objects(used)

    plan_reset(used.clients, used.settings)

    assert (_control_keys(used), _snapshot_objects(used)) == (keys, objects)
    assert used.queue_depth() == (1, 0)


# -- the reset -------------------------------------------------------------------------------------


def test_reset_purges_the_queue_and_the_dlq(used: Pipeline) -> None:
    _reset(used)

    assert used.queue_depth() == (0, 0)
    assert used.queue_depth(used.created.dlq_url) == (0, 0)


def test_reset_deletes_the_lease_and_pointer_items(used: Pipeline) -> None:
    _reset(used)

    assert not [k for k in _control_keys(used) if k.startswith(("lease#", "pointer#"))]
    assert used.compactor("b").pointers.read("docs").version == 0


def test_reset_sends_again_the_deletes_dynamodb_left_unprocessed(
    used: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throttled batch writes come back as UnprocessedItems: those items must not survive."""
    ddb = used.clients.dynamodb
    real = ddb.batch_write_item
    throttled = [True]

    def first_call_takes_one(**kwargs: Any) -> Any:
        if not throttled[0]:
            return real(**kwargs)
        throttled[0] = False
        ((table, requests),) = kwargs["RequestItems"].items()
        real(RequestItems={table: requests[:1]})
        return {"UnprocessedItems": {table: requests[1:]}}

    monkeypatch.setattr(ddb, "batch_write_item", first_call_takes_one)
    plan = plan_reset(used.clients, used.settings)
    assert len(plan.control_keys) > 1

    execute_reset(used.clients, used.settings, plan)

    assert not throttled[0]
    assert plan_reset(used.clients, used.settings).control_keys == []


def test_reset_deletes_every_snapshot_object(used: Pipeline) -> None:
    _reset(used)

    assert _snapshot_objects(used) == 0


def test_reset_keeps_objects_outside_the_snapshot_prefix(used: Pipeline) -> None:
    used.clients.s3.put_object(Bucket=used.names.bucket, Key="exports/keep-me", Body=b"x")

    _reset(used)

    assert _snapshot_objects(used, prefix="exports/") == 1


def test_reset_deletes_more_than_one_page_of_snapshot_objects(pipeline: Pipeline) -> None:
    # S3 lists and deletes at most 1000 keys per call.
    for i in range(1234):
        pipeline.clients.s3.put_object(
            Bucket=pipeline.names.bucket, Key=f"snapshots/docs/blobs/{i:05d}", Body=b"x"
        )

    plan = plan_reset(pipeline.clients, pipeline.settings)
    execute_reset(pipeline.clients, pipeline.settings, plan)

    assert plan.snapshot_objects == 1234
    assert _snapshot_objects(pipeline) == 0


def test_a_second_reset_within_a_minute_still_empties_the_queues(used: Pipeline) -> None:
    # SQS allows one PurgeQueue per queue per 60 s (moto enforces it too).
    _reset(used)
    used.send(*(ops.upsert("docs", f"again{i}", 1, vector(i)) for i in range(12)))

    _reset(used)

    assert used.queue_depth() == (0, 0)


# -- re-ingest -------------------------------------------------------------------------------------


def test_reset_then_reingest_rebuilds_each_collection_as_version_1_equal_to_the_table(
    used: Pipeline, reader: Reader
) -> None:
    # GIVEN table changes the snapshots never saw
    used.put("docs", "late", rev=1, seed=99, document="late", metadata={"late": True})
    used.delete("docs", "d0")
    used.put("notes", "n1", rev=2, seed=77, metadata={"edited": "yes"})
    _reset(used)

    versions = reingest(used.clients, used.settings)

    assert versions == {"docs": 1, "notes": 1}
    for collection in ("docs", "notes"):
        assert_same_records(snapshot_state(reader, collection), used.table_state(collection))


def test_reingest_skips_an_item_it_cannot_convert_and_names_it(
    pipeline: Pipeline, reader: Reader, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline.put("docs", "good", rev=1, seed=1)
    pipeline.clients.dynamodb.put_item(
        TableName=pipeline.names.source_table,
        Item={
            "collection": {"S": "docs"},
            "id": {"S": "numeric-document"},
            "rev": {"N": "1"},
            "embedding": {"B": vector(2).tobytes()},
            "document": {"N": "5"},
        },
    )
    pipeline.put("docs", "also-good", rev=1, seed=3)

    with caplog.at_level(logging.WARNING):
        versions = reingest(pipeline.clients, pipeline.settings)

    assert versions == {"docs": 1}
    assert set(snapshot_state(reader, "docs")) == {"good", "also-good"}
    assert any("numeric-document" in r.getMessage() for r in caplog.records)


def test_reingest_skips_table_rows_without_an_embedding(pipeline: Pipeline, reader: Reader) -> None:
    pipeline.put("docs", "whole", rev=1, seed=1)
    pipeline.clients.dynamodb.put_item(
        TableName=pipeline.names.source_table,
        Item={"collection": {"S": "docs"}, "id": {"S": "stub"}, "document": {"S": "no vector"}},
    )

    reingest(pipeline.clients, pipeline.settings)

    assert set(snapshot_state(reader, "docs")) == {"whole"}


def test_reingest_without_a_source_table_is_a_clear_error(pipeline: Pipeline) -> None:
    settings = pipeline.settings.model_copy(update={"source_table_name": ""})

    with pytest.raises(ConfigurationError, match="SOURCE_TABLE_NAME"):
        reingest(pipeline.clients, settings)


# -- the CLI and the script -----------------------------------------------------------------------


def test_reset_dry_run_command_prints_the_plan_and_deletes_nothing(
    used: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, objects = _control_keys(used), _snapshot_objects(used)

    assert main(["reset", "--dry-run"]) == 0

    assert "A reset deletes" in capsys.readouterr().out
    assert (_control_keys(used), _snapshot_objects(used)) == (keys, objects)
    assert used.queue_depth() == (1, 0) and used.queue_depth(used.created.dlq_url) == (1, 0)


def test_reset_yes_command_empties_the_pipeline(
    used: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reset", "--yes"]) == 0

    assert "reset done" in capsys.readouterr().out
    assert used.queue_depth() == (0, 0) and _snapshot_objects(used) == 0
    assert used.compactor("b").pointers.collections() == []


def test_the_script_forwards_to_the_reset_command(
    used: Pipeline,
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--dry-run"])

    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(SCRIPT), run_name="__main__")

    assert exited.value.code == 0
    assert "A reset deletes" in capsys.readouterr().out
    assert used.compactor("b").pointers.read("docs").version == 1


def _script_help() -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_the_script_help_runs_without_aws_and_lists_its_options() -> None:
    out = _script_help()

    assert all(flag in out for flag in ("--dry-run", "--yes", "--reingest"))
    assert "CONTROL_TABLE_NAME" in out


def test_the_script_help_says_how_to_point_it_at_a_local_stack() -> None:
    assert "AWS_ENDPOINT_URL" in _script_help()
