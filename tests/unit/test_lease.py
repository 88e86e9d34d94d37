"""LeaseTable: one holder at a time, a fencing token that grows on every acquisition."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from chroma_compactor.errors import LeaseBusy, LeaseLost

if TYPE_CHECKING:
    from chroma_compactor.lease import LeaseTable
    from support import Pipeline

C = "docs"
SECONDS = 30.0


def test_a_free_lease_is_acquired_with_token_1(leases: LeaseTable) -> None:
    lease = leases.acquire(C, "a", SECONDS)

    assert (lease.owner, lease.token) == ("a", 1)
    assert leases.holder(C).owner == "a"


def test_a_second_owner_gets_lease_busy_while_the_lease_is_held(
    leases: LeaseTable, pipeline: Pipeline
) -> None:
    leases.acquire(C, "a", SECONDS)
    pipeline.clock.advance(SECONDS - 1)

    with pytest.raises(LeaseBusy, match="held by a"):
        leases.acquire(C, "b", SECONDS)


def test_leases_of_different_collections_are_independent(leases: LeaseTable) -> None:
    leases.acquire(C, "a", SECONDS)

    assert leases.acquire("notes", "b", SECONDS).owner == "b"


def test_a_second_owner_acquires_after_expiry_with_a_higher_token(
    leases: LeaseTable, pipeline: Pipeline
) -> None:
    first = leases.acquire(C, "a", SECONDS)
    pipeline.clock.advance(SECONDS + 1)

    second = leases.acquire(C, "b", SECONDS)

    assert second.owner == "b"
    assert second.token > first.token


def test_the_holder_re_acquiring_its_own_lease_gets_a_new_token(leases: LeaseTable) -> None:
    first = leases.acquire(C, "a", SECONDS)

    again = leases.acquire(C, "a", SECONDS)

    assert again.token == first.token + 1


def test_extend_keeps_the_lease_past_its_first_expiry(
    leases: LeaseTable, pipeline: Pipeline
) -> None:
    lease = leases.acquire(C, "a", SECONDS)
    pipeline.clock.advance(SECONDS - 5)
    leases.extend(lease, SECONDS)
    pipeline.clock.advance(10)  # past the first expiry, inside the extended one

    with pytest.raises(LeaseBusy):
        leases.acquire(C, "b", SECONDS)


def test_extend_after_being_taken_over_raises_lease_lost(
    leases: LeaseTable, pipeline: Pipeline
) -> None:
    lease = leases.acquire(C, "a", SECONDS)
    pipeline.clock.advance(SECONDS + 1)
    leases.acquire(C, "b", SECONDS)

    with pytest.raises(LeaseLost):
        leases.extend(lease, SECONDS)


def test_extend_after_expiry_raises_lease_lost_even_if_nobody_took_over(
    leases: LeaseTable, pipeline: Pipeline
) -> None:
    lease = leases.acquire(C, "a", SECONDS)
    pipeline.clock.advance(SECONDS + 1)

    with pytest.raises(LeaseLost):
        leases.extend(lease, SECONDS)


def test_release_by_a_non_owner_returns_false_and_keeps_the_holder(
    leases: LeaseTable, pipeline: Pipeline
) -> None:
    # GIVEN "a" lost its lease to "b"
    stale = leases.acquire(C, "a", SECONDS)
    pipeline.clock.advance(SECONDS + 1)
    current = leases.acquire(C, "b", SECONDS)
    # WHEN "a" tries to release
    released = leases.release(stale)
    # THEN nothing changes
    assert released is False
    assert (leases.holder(C).owner, leases.holder(C).token) == ("b", current.token)


def test_release_by_the_owner_frees_the_lease_at_once(leases: LeaseTable) -> None:
    first = leases.acquire(C, "a", SECONDS)

    assert leases.release(first) is True
    assert leases.acquire(C, "b", SECONDS).token == first.token + 1
