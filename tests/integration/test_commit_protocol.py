"""No lost update: the race of the design we replace, crashes between steps, and abandonment."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.cycle import Step
from faults import At, SimulatedCrash, crash
from support import snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline


def test_lease_expiring_between_upload_and_commit_loses_no_update(
    pipeline: Pipeline, reader: Reader
) -> None:
    """reference/002 "Race Condition", T1-T12, replayed with our protocol.

    A uploads V+1 built from V; its lease runs out; B takes the lease, starts from V (the
    pointer has not moved), applies its own updates and commits. A's commit must then fail,
    and once A's messages come back, nothing either of them applied is missing.
    """
    pipeline.send(ops.upsert("docs", "base", 1, vector(0)))
    pipeline.drain(pipeline.compactor("setup"))
    pipeline.send(ops.upsert("docs", "from-a", 1, vector(1)))
    event_a = pipeline.receive_event()
    b = pipeline.compactor("b")
    b_reports = []

    def lease_expires_and_b_runs() -> None:  # T6-T12, between A's upload and A's commit
        pipeline.clock.advance(pipeline.settings.lease_seconds + 1)
        pipeline.send(ops.upsert("docs", "from-b", 1, vector(2)))
        b_reports.append(pipeline.cycle(b))

    a = pipeline.compactor("a", hooks=At(Step.COMMIT, lease_expires_and_b_runs))
    a_report = pipeline.cycle(a, event_a)

    (a_outcome,) = a_report.outcomes
    assert a_outcome.abandoned is not None and "CommitRejected" in a_outcome.abandoned
    assert b_reports[0].outcomes[0].committed_version == 2
    assert a_report.failed_event_ids == [m.message_id for m in event_a]  # Lambda keeps them
    # A released its messages at once; the next cycle applies them on top of B's version.
    pipeline.drain(b)
    assert set(snapshot_state(reader, "docs")) == {"base", "from-a", "from-b"}
    assert b.pointers.read("docs").version == 3


def test_a_stale_holder_cannot_commit_after_a_newer_one_did(
    pipeline: Pipeline, reader: Reader
) -> None:
    """The mirror order: B finishes first; A's late commit is refused by the pointer CAS."""
    pipeline.send(ops.upsert("docs", "from-a", 1, vector(1)))
    event_a = pipeline.receive_event()
    b = pipeline.compactor("b")

    def b_takes_over_after_expiry() -> None:  # A is slow to upload; its lease runs out
        pipeline.clock.advance(pipeline.settings.lease_seconds + 1)
        pipeline.send(ops.upsert("docs", "from-b", 1, vector(2)))
        assert pipeline.cycle(b).outcomes[0].committed_version == 1

    a = pipeline.compactor("a", hooks=At(Step.UPLOAD, b_takes_over_after_expiry))
    (a_outcome,) = pipeline.cycle(a, event_a).outcomes

    assert a_outcome.committed_version is None
    pipeline.drain(b)
    assert set(snapshot_state(reader, "docs")) == {"from-a", "from-b"}


@pytest.mark.parametrize("crash_before", [Step.UPLOAD, Step.COMMIT, Step.DELETE])
def test_a_crash_leaves_pointer_and_messages_and_the_next_cycle_converges(
    pipeline: Pipeline, reader: Reader, crash_before: Step
) -> None:
    pipeline.send(ops.upsert("docs", "old", 1, vector(0)))
    pipeline.drain(pipeline.compactor("setup"))
    pipeline.send(*(ops.upsert("docs", f"new{i}", 1, vector(i)) for i in range(5)))

    a = pipeline.compactor("a", hooks=At(crash_before, crash))
    with pytest.raises(SimulatedCrash):
        pipeline.cycle(a, pipeline.receive_event(visibility=1))

    committed = crash_before is Step.DELETE
    assert a.pointers.read("docs").version == (2 if committed else 1)
    assert sum(pipeline.queue_depth()) == 5  # none deleted
    # The dead invocation's lease and visibility run out; a new container (same /tmp) retries.
    pipeline.clock.advance(pipeline.settings.lease_seconds + 1)
    deadline = time.monotonic() + 10
    while pipeline.queue_depth()[0] < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    retry = pipeline.compactor("a")
    pipeline.drain(retry)
    assert set(snapshot_state(reader, "docs")) == {"old", *(f"new{i}" for i in range(5))}
    assert pipeline.queue_depth() == (0, 0)


def test_an_abandoned_cycle_publishes_nothing_and_releases_its_messages(
    pipeline: Pipeline, reader: Reader
) -> None:
    pipeline.send(ops.upsert("docs", "first", 1, vector(0)))
    pipeline.drain(pipeline.compactor("setup"))
    pipeline.send(ops.upsert("docs", "second", 1, vector(1)))

    def someone_else_moves_the_pointer() -> None:
        pipeline.clock.advance(pipeline.settings.lease_seconds + 1)

    a = pipeline.compactor("a", hooks=At(Step.COMMIT, someone_else_moves_the_pointer))
    report = pipeline.cycle(a)

    assert report.outcomes[0].abandoned is not None
    assert a.pointers.read("docs").version == 1
    assert pipeline.queue_depth() == (1, 0)  # visible again at once, not after a timeout
    assert set(snapshot_state(reader, "docs")) == {"first"}


def test_a_busy_lease_sends_the_batch_back_untouched(pipeline: Pipeline) -> None:
    pipeline.send(ops.upsert("docs", "x", 1, vector(0)))
    holder = pipeline.compactor("holder")
    holder.leases.acquire("docs", "someone-else", seconds=60)

    report = pipeline.cycle(pipeline.compactor("a"))

    assert "LeaseBusy" in (report.outcomes[0].abandoned or "")
    assert len(report.failed_event_ids) == 1
    assert pipeline.queue_depth() == (1, 0)
    assert holder.pointers.read("docs").version == 0


def test_the_heartbeat_keeps_a_long_cycle_s_lease(pipeline: Pipeline, reader: Reader) -> None:
    pipeline.settings = pipeline.settings.model_copy(update={"lease_seconds": 1.5})
    pipeline.send(ops.upsert("docs", "slow", 1, vector(0)))
    slow = pipeline.compactor("a", hooks=At(Step.UPLOAD, lambda: time.sleep(2.5)))

    (outcome,) = pipeline.cycle(slow).outcomes

    assert outcome.committed_version == 1, outcome.abandoned
    assert set(snapshot_state(reader, "docs")) == {"slow"}


def test_a_dead_holder_s_lease_is_waited_out_not_bounced(pipeline: Pipeline) -> None:
    pipeline.settings = pipeline.settings.model_copy(update={"lease_wait_seconds": 5})
    pipeline.send(ops.upsert("docs", "x", 1, vector(0)))
    pipeline.compactor("dead").leases.acquire("docs", "crashed-invocation", seconds=1)

    report = pipeline.cycle(pipeline.compactor("a"))

    assert report.outcomes[0].committed_version == 1
    assert report.failed_event_ids == []
