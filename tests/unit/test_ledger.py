"""Ledger: the snapshot's id -> rev memory and its tombstones, in a SQLite file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from chroma_compactor.ledger import Entry, Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger(path) as opened:
        yield opened


def test_recorded_entries_are_returned_by_get_many(ledger: Ledger) -> None:
    ledger.record([("a", Entry(3, deleted=False)), ("b", Entry(4, deleted=True, deleted_at=10.0))])

    assert ledger.get_many(["a", "b", "unknown", "a"]) == {
        "a": Entry(3, deleted=False),
        "b": Entry(4, deleted=True, deleted_at=10.0),
    }


def test_recording_an_id_again_replaces_its_entry(ledger: Ledger) -> None:
    ledger.record([("a", Entry(3, deleted=False))])

    ledger.record([("a", Entry(5, deleted=True, deleted_at=1.0))])

    assert ledger.get_many(["a"]) == {"a": Entry(5, deleted=True, deleted_at=1.0)}


def test_get_many_finds_more_ids_than_sqlite_binds_in_one_statement(ledger: Ledger) -> None:
    ids = [f"id-{i}" for i in range(2500)]
    ledger.record((id_, Entry(1, deleted=False)) for id_ in ids)

    assert set(ledger.get_many(ids)) == set(ids)


def test_a_rev_beyond_int64_survives_a_round_trip(ledger: Ledger) -> None:
    # A rev derived from a stream SequenceNumber can have 21+ digits.
    rev = 400_000_000_000_000_000_012_345
    ledger.record([("a", Entry(rev, deleted=False))])

    assert ledger.get_many(["a"])["a"].rev == rev


def test_live_count_and_tombstone_count_count_separately(ledger: Ledger) -> None:
    ledger.record(
        [
            ("a", Entry(1, deleted=False)),
            ("b", Entry(1, deleted=False)),
            ("c", Entry(1, deleted=False)),
            ("d", Entry(2, deleted=True, deleted_at=5.0)),
        ]
    )

    assert (ledger.live_count(), ledger.tombstone_count()) == (3, 1)
    assert list(ledger.live_ids()) == ["a", "b", "c"]


def test_prune_tombstones_forgets_only_tombstones_older_than_the_horizon(ledger: Ledger) -> None:
    # GIVEN a tombstone from t=100, one from t=200 and a live entry
    ledger.record(
        [
            ("old", Entry(1, deleted=True, deleted_at=100.0)),
            ("recent", Entry(1, deleted=True, deleted_at=200.0)),
            ("live", Entry(1, deleted=False)),
        ]
    )
    # WHEN pruning with a horizon at t=150
    pruned = ledger.prune_tombstones(older_than=150.0)
    # THEN only the old tombstone is forgotten
    assert pruned == 1
    assert set(ledger.get_many(["old", "recent", "live"])) == {"recent", "live"}


def test_a_fresh_ledger_has_no_dimension(ledger: Ledger) -> None:
    assert ledger.dimension is None


def test_entries_and_dimension_persist_across_reopen(path: Path) -> None:
    with Ledger(path) as first:
        first.dimension = 1536
        first.record([("a", Entry(2, deleted=False))])

    with Ledger(path) as reopened:
        assert reopened.dimension == 1536
        assert reopened.get_many(["a"]) == {"a": Entry(2, deleted=False)}
