"""Shard routing: stable, spread, and names users cannot collide with."""

from __future__ import annotations

from collections import Counter

import pytest

from chroma_compactor import ops
from chroma_compactor.errors import InvalidMessage
from chroma_compactor.shards import Layout, partition_name, shard_of
from support import vector


def test_the_shard_of_an_id_is_the_same_in_every_process() -> None:
    # Pinned values: a change here would move records between shards of existing collections.
    assert shard_of("doc-1", 16) == 1
    assert shard_of("doc-2", 16) == 2
    assert [shard_of(f"id{i}", 4) for i in range(6)] == [2, 2, 3, 0, 3, 0]


def test_ids_spread_evenly_over_the_shards() -> None:
    counts = Counter(shard_of(f"record-{i}", 8) for i in range(8000))

    assert set(counts) == set(range(8))
    assert max(counts.values()) < 1.1 * 1000


def test_one_shard_is_the_collection_itself() -> None:
    assert Layout("docs").partitions == ["docs"]
    assert Layout("docs").partition_of("anything") == "docs"
    assert Layout("docs").group_id("anything") == "compaction:docs"


def test_shards_are_named_with_their_index_and_count() -> None:
    assert Layout("docs", 3).partitions == ["docs.s0-of-3", "docs.s1-of-3", "docs.s2-of-3"]
    assert partition_name("docs", 2, 3) == "docs.s2-of-3"


def test_a_collection_named_like_a_shard_is_refused() -> None:
    body = ops.encode(ops.upsert("docs", "a", 1, vector(1))).replace('"docs"', '"docs.s1-of-4"')

    with pytest.raises(InvalidMessage, match="reserved for the shards"):
        ops.decode(body)
