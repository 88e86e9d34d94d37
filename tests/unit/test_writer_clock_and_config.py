"""The writer's revs and configuration, without AWS."""

from __future__ import annotations

import pytest

from chroma_compactor.errors import ConfigurationError
from chroma_compactor.writer import HybridClock, WriterConfig


def test_revs_follow_the_wall_clock() -> None:
    now = [1_000.0]
    clock = HybridClock(now=lambda: now[0])
    before = clock.next()
    now[0] += 0.000_001

    assert clock.next() > before
    assert clock.next() >> 8 == 1_000_000_001  # microseconds above the counter bits


def test_revs_grow_when_the_clock_stands_still_or_steps_back() -> None:
    now = [1_000.0]
    clock = HybridClock(now=lambda: now[0])
    revs = [clock.next() for _ in range(300)]  # more than the counter's 256 per microsecond
    now[0] -= 5  # NTP steps the clock back
    revs.append(clock.next())

    assert revs == sorted(set(revs))


def test_a_rev_taken_after_a_delete_is_above_the_deleted_records_rev_on_any_writer() -> None:
    # Two writers on two machines with synchronised clocks: the record, the delete, the re-create.
    created = HybridClock(now=lambda: 1_000.000).next()
    recreated = HybridClock(now=lambda: 1_000.001).next()

    assert recreated > created


def test_configuration_is_read_from_prefixed_variables() -> None:
    config = WriterConfig.from_env(
        {
            "CHROMA_COMPACTOR_WRITER_TABLE": "vectors",
            "CHROMA_COMPACTOR_WRITER_COLLECTION": "docs",
            "CHROMA_COMPACTOR_WRITER_MODE": "batch",
            "CHROMA_COMPACTOR_WRITER_BATCH_SIZE": "10",
            "CHROMA_COMPACTOR_WRITER_MAX_DELAY_SECONDS": "0.2",
            "CHROMA_COMPACTOR_WRITER_BUFFER_SIZE": "100",
            "CHROMA_COMPACTOR_WRITER_ON_FULL": "raise",
            "CHROMA_COMPACTOR_WRITER_MAX_ATTEMPTS": "3",
        }
    )

    assert config == WriterConfig(
        table="vectors",
        collection="docs",
        mode="batch",
        batch_size=10,
        max_delay_seconds=0.2,
        buffer_size=100,
        on_full="raise",
        max_attempts=3,
    )


def test_an_argument_beats_the_environment() -> None:
    env = {"CHROMA_COMPACTOR_WRITER_TABLE": "vectors", "CHROMA_COMPACTOR_WRITER_BATCH_SIZE": "10"}

    assert WriterConfig.from_env(env, batch_size=5).batch_size == 5


def test_a_batch_over_dynamodbs_25_items_is_a_configuration_error() -> None:
    env = {"CHROMA_COMPACTOR_WRITER_TABLE": "vectors", "CHROMA_COMPACTOR_WRITER_BATCH_SIZE": "26"}

    with pytest.raises(ConfigurationError, match="CHROMA_COMPACTOR_WRITER_BATCH_SIZE"):
        WriterConfig.from_env(env)


def test_a_writer_needs_a_table() -> None:
    with pytest.raises(ConfigurationError, match="CHROMA_COMPACTOR_WRITER_TABLE"):
        WriterConfig.from_env({})


def test_a_stub_must_outlive_the_tombstone_horizon() -> None:
    env = {"CHROMA_COMPACTOR_WRITER_TABLE": "vectors", "CHROMA_COMPACTOR_WRITER_STUB_TTL_DAYS": "7"}

    with pytest.raises(ConfigurationError, match="CHROMA_COMPACTOR_WRITER_STUB_TTL_DAYS"):
        WriterConfig.from_env(env)
