"""PointerTable: the pointer moves only in a transaction that proves the lease is still ours."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from chroma_compactor.errors import CommitRejected
from chroma_compactor.pointer import Pointer, PointerTable

if TYPE_CHECKING:
    from chroma_compactor.lease import Lease, LeaseTable
    from support import FakeClock, Pipeline

C = "docs"
SECONDS = 30.0


@pytest.fixture
def pointers(pipeline: Pipeline) -> PointerTable:
    return PointerTable(pipeline.clients.dynamodb, pipeline.names.control_table, pipeline.clock)


@pytest.fixture
def lease(leases: LeaseTable) -> Lease:
    return leases.acquire(C, "a", SECONDS)


def _commit(
    pointers: PointerTable, leases: LeaseTable, lease: Lease, expected: int, new: int
) -> Pointer:
    return pointers.commit(
        leases,
        lease,
        expected_version=expected,
        new_version=new,
        manifest_key=f"snaps/docs/versions/{new:012d}/manifest.json",
        record_count=10 * new,
    )


def _lose_lease(leases: LeaseTable, clock: FakeClock, how: str) -> None:
    clock.advance(SECONDS + 1)
    if how == "taken-over":
        leases.acquire(C, "b", SECONDS)


def test_a_collection_never_committed_reads_as_version_0(pointers: PointerTable) -> None:
    assert pointers.read(C) == Pointer(C, 0)


def test_the_first_commit_moves_the_pointer_from_version_0(
    pointers: PointerTable, leases: LeaseTable, lease: Lease
) -> None:
    committed = _commit(pointers, leases, lease, expected=0, new=1)

    assert pointers.read(C) == committed
    assert (committed.version, committed.record_count, committed.token) == (1, 10, lease.token)


def test_consecutive_commits_advance_the_pointer(
    pointers: PointerTable, leases: LeaseTable, lease: Lease
) -> None:
    _commit(pointers, leases, lease, expected=0, new=1)
    _commit(pointers, leases, lease, expected=1, new=2)

    assert pointers.read(C).version == 2


@pytest.mark.parametrize("expected", [0, 2], ids=["behind", "ahead"])
def test_a_commit_from_the_wrong_version_is_rejected_and_writes_nothing(
    pointers: PointerTable, leases: LeaseTable, lease: Lease, expected: int
) -> None:
    before = _commit(pointers, leases, lease, expected=0, new=1)

    with pytest.raises(CommitRejected, match=f"expected version {expected}"):
        _commit(pointers, leases, lease, expected=expected, new=expected + 1)

    assert pointers.read(C) == before


@pytest.mark.parametrize("how", ["expired", "taken-over"])
def test_a_commit_without_the_lease_is_rejected_and_writes_nothing(
    pointers: PointerTable, leases: LeaseTable, lease: Lease, pipeline: Pipeline, how: str
) -> None:
    # GIVEN a cycle that built version 1, then lost its lease before the pointer write
    _lose_lease(leases, pipeline.clock, how)
    # WHEN it commits
    with pytest.raises(CommitRejected, match="lease check ConditionalCheckFailed"):
        _commit(pointers, leases, lease, expected=0, new=1)
    # THEN the pointer has not moved
    assert pointers.read(C).version == 0


@pytest.mark.parametrize("version", [0, 1])
def test_confirm_passes_while_holding_the_lease_at_the_current_version(
    pointers: PointerTable, leases: LeaseTable, lease: Lease, version: int
) -> None:
    if version:
        _commit(pointers, leases, lease, expected=0, new=version)

    pointers.confirm(leases, lease, version)

    assert pointers.read(C).version == version


def test_confirm_at_the_wrong_version_is_rejected(
    pointers: PointerTable, leases: LeaseTable, lease: Lease
) -> None:
    _commit(pointers, leases, lease, expected=0, new=1)

    with pytest.raises(CommitRejected, match="expected version 0"):
        pointers.confirm(leases, lease, 0)


@pytest.mark.parametrize("how", ["expired", "taken-over"])
def test_confirm_without_the_lease_is_rejected(
    pointers: PointerTable, leases: LeaseTable, lease: Lease, pipeline: Pipeline, how: str
) -> None:
    _lose_lease(leases, pipeline.clock, how)

    with pytest.raises(CommitRejected, match="lease check ConditionalCheckFailed"):
        pointers.confirm(leases, lease, 0)
