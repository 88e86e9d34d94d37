"""Settings: one model read from the environment by every process, and written back to it."""

from __future__ import annotations

import json

import pytest

from chroma_compactor.errors import ConfigurationError
from chroma_compactor.settings import QueueType, Settings

REQUIRED = {"CONTROL_TABLE_NAME": "control", "SNAPSHOT_BUCKET": "bucket"}
Q_DOCS = "https://sqs.us-east-1.amazonaws.com/123456789012/docs"
Q_NOTES = "https://sqs.us-east-1.amazonaws.com/123456789012/notes"


def test_from_env_fills_in_defaults() -> None:
    settings = Settings.from_env(REQUIRED)

    assert settings.control_table_name == "control"
    assert settings.snapshot_bucket == "bucket"
    assert settings.queue_type is QueueType.STANDARD
    assert settings.snapshot_prefix == "snapshots"
    assert settings.max_messages_per_cycle == 10_000
    assert settings.lease_seconds == 60.0
    assert settings.tombstone_horizon_days == 15.0
    assert (settings.batch_size, settings.batching_window) == (100, 5)


def test_from_env_treats_an_empty_variable_as_unset() -> None:
    settings = Settings.from_env({**REQUIRED, "LEASE_SECONDS": "", "SNAPSHOT_PREFIX": ""})

    assert (settings.lease_seconds, settings.snapshot_prefix) == (60.0, "snapshots")


def test_from_env_names_a_missing_required_variable() -> None:
    with pytest.raises(ConfigurationError, match="SNAPSHOT_BUCKET: Field required"):
        Settings.from_env({"CONTROL_TABLE_NAME": "control"})


def test_queue_type_fifo_selects_fifo_event_source_defaults() -> None:
    settings = Settings.from_env({**REQUIRED, "QUEUE_TYPE": "fifo"})

    assert settings.queue_type is QueueType.FIFO
    assert (settings.batch_size, settings.batching_window) == (10, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [("LEASE_SECONDS", "sixty"), ("MAX_MESSAGES_PER_CYCLE", "1.5"), ("CHUNK_BYTES", "12")],
)
def test_an_invalid_number_is_a_configuration_error_naming_the_variable(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"{name}: "):
        Settings.from_env({**REQUIRED, name: value})


def test_queue_url_for_gives_the_single_queue_to_every_collection() -> None:
    settings = Settings.from_env({**REQUIRED, "COMPACTION_QUEUE_URL": Q_DOCS})

    assert settings.queue_url_for("anything") == Q_DOCS


def test_compaction_queue_urls_routes_each_collection_to_its_queue() -> None:
    urls = json.dumps({"docs": Q_DOCS, "notes": Q_NOTES})

    settings = Settings.from_env({**REQUIRED, "COMPACTION_QUEUE_URLS": urls})

    assert settings.queue_url_for("docs") == Q_DOCS
    assert settings.queue_url_for("notes") == Q_NOTES


def test_compaction_queue_urls_that_is_not_json_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="COMPACTION_QUEUE_URLS is not a JSON object"):
        Settings.from_env({**REQUIRED, "COMPACTION_QUEUE_URLS": "{docs: nope"})


def test_a_collection_missing_from_the_map_raises_naming_the_known_ones() -> None:
    settings = Settings(
        **_required_fields(), compaction_queue_urls={"docs": Q_DOCS, "notes": Q_NOTES}
    )

    with pytest.raises(ConfigurationError, match=r"'other'.*known: docs, notes"):
        settings.queue_url_for("other")


def test_from_env_with_both_queue_url_and_queue_urls_is_an_error() -> None:
    env = {
        **REQUIRED,
        "COMPACTION_QUEUE_URL": Q_DOCS,
        "COMPACTION_QUEUE_URLS": json.dumps({"docs": Q_DOCS}),
    }

    with pytest.raises(ConfigurationError, match="not both"):
        Settings.from_env(env)


def test_a_model_with_both_queue_url_and_queue_urls_is_refused() -> None:
    with pytest.raises(ValueError, match="COMPACTION_QUEUE_URL or COMPACTION_QUEUE_URLS, not both"):
        Settings(
            **_required_fields(),
            compaction_queue_url=Q_DOCS,
            compaction_queue_urls={"docs": Q_DOCS},
        )


def test_a_batching_window_on_a_fifo_queue_is_refused() -> None:
    env = {**REQUIRED, "QUEUE_TYPE": "fifo", "COMPACTION_BATCHING_WINDOW_SECONDS": "5"}

    with pytest.raises(ConfigurationError, match="COMPACTION_BATCHING_WINDOW_SECONDS must be 0"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "routing",
    [
        pytest.param({"compaction_queue_url": Q_DOCS}, id="single-queue"),
        pytest.param({"compaction_queue_urls": {"docs": Q_DOCS, "notes": Q_NOTES}}, id="queue-map"),
    ],
)
def test_to_env_round_trips_through_from_env(routing: dict[str, object]) -> None:
    settings = Settings(
        **_required_fields(),
        **routing,
        source_table_name="source",
        snapshot_prefix="snaps/v1",
        queue_type=QueueType.FIFO,
        max_messages_per_cycle=500,
        fetch_seconds=2.5,
        lease_seconds=45.0,
        lease_wait_seconds=10.0,
        retain_versions=3,
        tombstone_horizon_days=20.0,
        cache_dir="/tmp/elsewhere",
        chunk_bytes=8192,
        hnsw_space="l2",
        compaction_batch_size=7,
        compaction_batching_window_seconds=0,
        stream_batch_size=50,
    )

    assert Settings.from_env(settings.to_env()) == settings


def _required_fields() -> dict[str, str]:
    return {"control_table_name": "control", "snapshot_bucket": "bucket"}
