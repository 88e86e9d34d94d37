"""collect_status() and `chroma-compactor status`: what an operator asks first."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from chroma_compactor import ops
from chroma_compactor.cli import main
from chroma_compactor.cycle import Hooks, Step
from chroma_compactor.lease import LeaseTable
from chroma_compactor.local_snapshot import warm_client
from chroma_compactor.snapshot_cache import SnapshotCache
from chroma_compactor.status import (
    STUCK_LEASE_S,
    CollectionStatus,
    PipelineStatus,
    QueueStatus,
    collect_status,
    render_status,
)
from support import vector

if TYPE_CHECKING:
    from support import Pipeline


def _compact(pipeline: Pipeline, *operations: ops.Operation | str) -> None:
    pipeline.send(*operations)
    pipeline.drain(pipeline.compactor("a"))


def _poison_the_dlq(pipeline: Pipeline) -> None:
    # Unparseable: rejected on every receive until SQS moves it after maxReceiveCount.
    _compact(pipeline, "garbage")


def test_status_shows_each_collections_version_and_record_count(pipeline: Pipeline) -> None:
    _compact(pipeline, *(ops.upsert("docs", f"d{i}", 1, vector(i)) for i in range(3)))
    _compact(
        pipeline, ops.upsert("docs", "d3", 1, vector(3)), ops.upsert("notes", "n", 1, vector(9))
    )

    status = collect_status(pipeline.clients, pipeline.settings, pipeline.clock)

    assert [(c.collection, c.version, c.record_count) for c in status.collections] == [
        ("docs", 2, 4),
        ("notes", 1, 1),
    ]


def test_pointer_age_is_time_since_the_last_commit(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    pipeline.clock.advance(90)

    (docs,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).collections

    assert docs.pointer_age_s == pytest.approx(90, abs=5)


def test_status_names_the_lease_holder_and_the_time_it_has_left(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    pipeline.compactor("b").leases.acquire("docs", "lambda-7", seconds=60)

    (docs,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).collections

    assert docs.lease_owner == "lambda-7"
    assert docs.lease_expires_in_s == pytest.approx(60, abs=5)


def test_a_released_lease_shows_no_holder(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))

    (docs,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).collections

    assert (docs.lease_owner, docs.lease_expires_in_s) == (None, None)


def test_an_expired_lease_shows_no_holder(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    pipeline.compactor("b").leases.acquire("docs", "crashed-lambda", seconds=30)
    pipeline.clock.advance(31)

    (docs,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).collections

    assert docs.lease_owner is None


def test_a_collection_whose_first_cycle_holds_the_lease_is_listed(pipeline: Pipeline) -> None:
    pipeline.compactor("b").leases.acquire("fresh", "lambda-1", seconds=60)

    status = collect_status(pipeline.clients, pipeline.settings, pipeline.clock)

    assert [(c.collection, c.version, c.lease_owner) for c in status.collections] == [
        ("fresh", 0, "lambda-1")
    ]


def test_status_counts_visible_and_in_flight_messages(pipeline: Pipeline) -> None:
    pipeline.send(*(ops.upsert("docs", f"d{i}", 1, vector(i)) for i in range(5)))
    pipeline.receive_event(max_messages=2)

    (queue,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).queues

    assert (queue.queue_url, queue.visible, queue.in_flight) == (pipeline.created.queue_url, 3, 2)


def test_status_finds_the_dlq_from_the_redrive_policy(pipeline: Pipeline) -> None:
    (queue,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).queues

    assert (queue.dlq_url, queue.dlq_visible) == (pipeline.created.dlq_url, 0)


def test_a_message_in_the_dlq_makes_the_pipeline_unhealthy(pipeline: Pipeline) -> None:
    _poison_the_dlq(pipeline)

    status = collect_status(pipeline.clients, pipeline.settings, pipeline.clock)

    assert status.queues[0].dlq_visible == 1
    assert status.healthy is False


def test_an_empty_dlq_is_healthy(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))

    assert collect_status(pipeline.clients, pipeline.settings, pipeline.clock).healthy is True


def test_status_never_spends_a_receive_count(pipeline: Pipeline) -> None:
    pipeline.send(ops.upsert("docs", "a", 1, vector(1)))

    collect_status(pipeline.clients, pipeline.settings, pipeline.clock)

    (message,) = pipeline.receive_event()
    assert message.receive_count == 1


def test_oldest_message_age_is_unknown_without_a_cloudwatch_datapoint(pipeline: Pipeline) -> None:
    pipeline.send(ops.upsert("docs", "a", 1, vector(1)))

    (queue,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).queues

    assert queue.oldest_age_s is None


def _oldest_message_age(pipeline: Pipeline, seconds: float) -> None:
    """The datapoint SQS would have published for the queue a minute ago."""
    pipeline.clients.cloudwatch.put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": pipeline.names.queue}],
                "Value": seconds,
                "Unit": "Seconds",
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
            }
        ],
    )


def test_oldest_message_age_comes_from_cloudwatch(pipeline: Pipeline) -> None:
    _oldest_message_age(pipeline, 420.0)

    (queue,) = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).queues

    assert queue.oldest_age_s == 420.0


def test_to_json_is_plain_json_with_health_collections_and_queues(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))

    doc = collect_status(pipeline.clients, pipeline.settings, pipeline.clock).to_json()

    assert json.loads(json.dumps(doc)) == doc
    assert set(doc) == {"healthy", "problems", "collections", "queues"}
    assert set(doc["collections"][0]) == {
        "collection",
        "version",
        "record_count",
        "pointer_age_s",
        "lease_owner",
        "lease_expires_in_s",
        "lease_held_s",
        "last_failure",
        "last_failure_age_s",
        "failing",
        "lease_stuck",
    }
    assert set(doc["queues"][0]) == {
        "queue_url",
        "visible",
        "in_flight",
        "dlq_url",
        "dlq_visible",
        "oldest_age_s",
    }


# -- rendering ------------------------------------------------------------------------------------


def _rendered(status: PipelineStatus) -> str:
    out = io.StringIO()
    render_status(status, Console(file=out, width=200, color_system=None))
    return out.getvalue()


def test_render_shows_ages_in_seconds_and_minutes() -> None:
    status = PipelineStatus(
        collections=[CollectionStatus("docs", 4, 120, 12.0, "lambda-1", 180.0)],
        queues=[QueueStatus("https://sqs/q", 0, 0, "https://sqs/q-dlq", 0, None)],
    )

    out = _rendered(status)

    assert "12s" in out and "lambda-1 (3m left)" in out


def test_render_tells_the_operator_to_redrive_when_the_dlq_holds_messages() -> None:
    status = PipelineStatus(
        collections=[], queues=[QueueStatus("https://sqs/q", 0, 0, "https://sqs/q-dlq", 2, None)]
    )

    assert "redrive" in _rendered(status)


# -- the CLI ---------------------------------------------------------------------------------------


def test_status_command_exits_0_and_prints_tables_when_healthy(
    pipeline: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))

    assert main(["status"]) == 0

    out = capsys.readouterr().out
    assert "Collections" in out and "docs" in out and pipeline.names.queue in out


def test_status_command_exits_1_when_the_dlq_holds_a_message(
    pipeline: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison_the_dlq(pipeline)

    assert main(["status", "--json"]) == 1

    doc = json.loads(capsys.readouterr().out)
    assert doc["healthy"] is False and doc["queues"][0]["dlq_visible"] == 1


def test_status_reads_the_pipeline_from_pulumi_stack_outputs(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    outputs = {**pipeline.settings.to_env(), "DASHBOARD_NAME": "ignored-by-status"}
    for name in outputs:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))

    code = main(["--stack-outputs", str(tmp_path / "outputs.json"), "status", "--json"])

    assert code == 0
    (docs,) = json.loads(capsys.readouterr().out)["collections"]
    assert (docs["collection"], docs["version"]) == ("docs", 1)


def test_unreadable_stack_outputs_are_refused_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outputs.json").write_text("not json")

    code = main(["--stack-outputs", str(tmp_path / "outputs.json"), "status"])

    assert code == 2
    assert "pulumi stack output --json" in capsys.readouterr().err


# -- health flags ---------------------------------------------------------------------------------


def test_a_lease_held_longer_than_any_invocation_is_flagged_stuck(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    leases = LeaseTable(pipeline.clients.dynamodb, pipeline.names.control_table, pipeline.clock)
    lease = leases.acquire("docs", "hung-worker", 60)
    for _ in range(int(STUCK_LEASE_S // 30) + 1):  # its heartbeat runs; the cycle itself hangs
        pipeline.clock.advance(30)
        lease = leases.extend(lease, 60)

    status = collect_status(pipeline.clients, pipeline.settings, pipeline.clock)

    (docs,) = status.collections
    assert docs.lease_stuck
    assert any("hung-worker" in p and "stuck" in p for p in status.problems)
    assert not status.healthy


def test_a_lease_held_by_a_running_cycle_is_not_a_problem(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    LeaseTable(pipeline.clients.dynamodb, pipeline.names.control_table, pipeline.clock).acquire(
        "docs", "busy-worker", 60
    )

    status = collect_status(pipeline.clients, pipeline.settings, pipeline.clock)

    assert status.collections[0].lease_owner == "busy-worker"
    assert status.problems == []


def test_messages_older_than_the_last_commit_are_flagged(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    pipeline.clock.advance(3600)  # no commit for an hour ...
    _oldest_message_age(pipeline, 1800)  # ... while a message has waited half an hour

    status = collect_status(pipeline.clients, pipeline.settings, pipeline.clock)

    assert any("nothing was committed since it arrived" in p for p in status.problems)


def test_a_young_backlog_after_a_recent_commit_is_not_flagged(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    _oldest_message_age(pipeline, 1800)

    assert collect_status(pipeline.clients, pipeline.settings, pipeline.clock).problems == []


class _LoseAWrite(Hooks):
    """Chroma drops a record between apply and validation: the working copy is not the ledger."""

    def __init__(self, cache_dir: str) -> None:
        self.cache_dir = Path(cache_dir)

    def before(self, step: Step, collection: str) -> None:
        if step is Step.VALIDATE:
            work = SnapshotCache(self.cache_dir, collection).snapshot.chroma_dir
            with warm_client(work) as client:
                client.get_collection(collection).delete(ids=["b"])


def test_a_version_that_failed_validation_is_flagged_with_its_number(pipeline: Pipeline) -> None:
    _compact(pipeline, ops.upsert("docs", "a", 1, vector(1)))
    c = pipeline.compactor("v")
    c = pipeline.compactor("v", hooks=_LoseAWrite(c.settings.cache_dir))  # its own cache dir

    pipeline.send(ops.upsert("docs", "b", 1, vector(2)))
    outcome = pipeline.cycle(c).outcomes[0]

    assert outcome.abandoned is not None and "ValidationFailed" in outcome.abandoned
    assert c.pointers.read("docs").version == 1  # never published
    status = collect_status(pipeline.clients, pipeline.settings, pipeline.clock)
    assert not status.healthy
    assert any(
        "cycles fail: ValidationFailed: version 2 not published" in p for p in status.problems
    )
