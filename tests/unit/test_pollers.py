"""Local mode's event source mapping runs the compactor at the concurrency infra reserves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chroma_compactor.pollers import Pollers

if TYPE_CHECKING:
    from support import Pipeline


def _queue_pollers(pollers: Pollers) -> int:
    return sum(t.name.startswith("queue-poller-") for t in pollers._threads)


def test_an_unsharded_pipeline_polls_its_queue_with_one_compactor(pipeline: Pipeline) -> None:
    assert _queue_pollers(Pollers(pipeline.settings, pipeline.clients)) == 1


def test_a_sharded_pipeline_polls_with_one_compactor_per_shard_group(pipeline: Pipeline) -> None:
    settings = pipeline.settings.model_copy(update={"collection_shards": {"a": 2, "b": 4}})

    assert settings.compactor_concurrency == 6
    assert _queue_pollers(Pollers(settings, pipeline.clients)) == 6
