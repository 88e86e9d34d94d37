"""merge.plan: a batch of operations folds into one effect per id, decided by revs alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chroma_compactor import ops
from chroma_compactor.ledger import Entry
from chroma_compactor.merge import Effect, EffectKind, plan

C = "docs"


def _emb(seed: float) -> list[float]:
    return [seed, seed + 1.0, seed + 2.0, seed + 3.0]


def _put(id_: str, rev: int, seed: float = 0.0) -> ops.Operation:
    return ops.upsert(C, id_, rev, _emb(seed), document=f"doc {rev}", metadata={"rev": rev})


def test_an_op_not_newer_than_the_ledger_is_skipped_and_counted_stale() -> None:
    # GIVEN the ledger has applied rev 5 of "a"
    ledger = {"a": Entry(rev=5, deleted=False)}
    # WHEN ops at rev 4 and rev 5 arrive late
    result = plan([_put("a", 4), _put("a", 5)], ledger)
    # THEN neither has an effect, and both are counted stale (not errors)
    assert result.effects == {}
    assert result.stale == 2
    assert result.ops == 2


def test_a_duplicate_op_is_counted_stale_and_applied_once() -> None:
    result = plan([_put("a", 1), _put("a", 1)], {})

    assert result.effects["a"].rev == 1
    assert result.stale == 1
    assert result.coalesced == 0


def test_a_delete_at_equal_rev_outranks_an_upsert() -> None:
    result = plan([ops.delete(C, "a", 3), _put("a", 3)], {})

    assert result.effects == {"a": Effect("a", EffectKind.DELETE, 3)}


def test_an_upsert_at_the_rev_of_a_tombstone_is_stale() -> None:
    # GIVEN "a" was deleted at rev 3; WHEN the upsert of rev 3 is redelivered
    result = plan([_put("a", 3)], {"a": Entry(rev=3, deleted=True, deleted_at=1.0)})
    # THEN the tombstone keeps it deleted
    assert result.effects == {}
    assert result.stale == 1


def test_a_tombstone_stops_an_older_upsert_from_resurrecting_the_record() -> None:
    result = plan([_put("a", 2)], {"a": Entry(rev=5, deleted=True, deleted_at=1.0)})

    assert result.effects == {}
    assert result.stale == 1


def test_a_re_create_with_a_higher_rev_than_the_tombstone_wins() -> None:
    result = plan([_put("a", 6, seed=9.0)], {"a": Entry(rev=5, deleted=True, deleted_at=1.0)})

    effect = result.effects["a"]
    assert (effect.kind, effect.rev, effect.embedding) == (
        EffectKind.PUT,
        6,
        ops.pack_embedding(_emb(9.0)),
    )


def test_a_delete_then_re_create_in_one_batch_leaves_the_re_created_record() -> None:
    result = plan([_put("a", 6), ops.delete(C, "a", 5)], {"a": Entry(rev=4, deleted=False)})

    assert result.effects["a"].kind is EffectKind.PUT
    assert result.effects["a"].rev == 6


def test_a_delete_of_an_unknown_id_is_still_an_effect_so_its_tombstone_is_recorded() -> None:
    result = plan([ops.delete(C, "never-seen", 2)], {})

    assert result.effects == {"never-seen": Effect("never-seen", EffectKind.DELETE, 2)}


def test_an_update_of_an_unknown_id_is_counted_not_found_and_has_no_effect() -> None:
    result = plan([ops.update(C, "ghost", 1, document="x")], {})

    assert result.effects == {}
    assert result.not_found == 1
    assert result.stale == 0


def test_an_update_of_a_deleted_id_is_counted_not_found() -> None:
    ledger = {"a": Entry(rev=2, deleted=True, deleted_at=1.0)}

    result = plan([ops.update(C, "a", 3, metadata={"k": "v"})], ledger)

    assert result.effects == {}
    assert result.not_found == 1


def test_an_update_after_a_delete_in_the_same_batch_is_counted_not_found() -> None:
    result = plan([ops.update(C, "a", 3, document="late"), ops.delete(C, "a", 2)], {})

    assert result.effects == {"a": Effect("a", EffectKind.DELETE, 2)}
    assert result.not_found == 1
    assert result.coalesced == 0


def test_an_update_of_a_live_id_becomes_a_patch_of_only_the_fields_it_carries() -> None:
    result = plan([ops.update(C, "a", 2, metadata={"k": "v"})], {"a": Entry(1, deleted=False)})

    effect = result.effects["a"]
    assert (effect.kind, effect.rev, effect.metadata) == (EffectKind.PATCH, 2, {"k": "v"})
    assert (effect.sets_metadata, effect.sets_document) == (True, False)


def test_an_update_on_top_of_an_upsert_in_the_same_batch_merges_into_the_put() -> None:
    # GIVEN an upsert at rev 1 and a document patch at rev 2, delivered in reverse
    upsert = ops.upsert(C, "a", 1, _emb(1.0), document="old", metadata={"k": 1})
    patch = ops.update(C, "a", 2, document="new")
    # WHEN planned
    result = plan([patch, upsert], {})
    # THEN one PUT at rev 2: the upsert's embedding and metadata, the patch's document
    effect = result.effects["a"]
    assert (effect.kind, effect.rev) == (EffectKind.PUT, 2)
    assert effect.embedding == ops.pack_embedding(_emb(1.0))
    assert (effect.document, effect.metadata) == ("new", {"k": 1})


def test_coalesced_counts_the_ops_folded_into_a_later_op_of_the_same_id() -> None:
    batch = [
        _put("a", 1),
        ops.update(C, "a", 2, document="two"),
        ops.update(C, "a", 3, document="three"),
        _put("b", 1),
    ]

    result = plan(batch, {})

    assert (result.ops, result.coalesced, result.stale, result.not_found) == (4, 2, 0, 0)
    assert set(result.effects) == {"a", "b"}
    assert result.effects["a"].document == "three"


# -- order independence ---------------------------------------------------------------------------

_ids = st.sampled_from(["a", "b", "c"])
_revs = st.integers(min_value=1, max_value=6)


def _op(id_: str, rev: int, kind: str, update_revs: set[int]) -> ops.Operation:
    """A well-formed stream of writes: one state per (id, rev), plus deletes seen at a rev."""
    if kind == "delete":
        return ops.delete(C, id_, rev)
    if rev in update_revs:
        return ops.update(C, id_, rev, document=f"{id_}@{rev}", metadata={"rev": rev})
    return ops.upsert(C, id_, rev, _emb(float(rev)), document=f"{id_}@{rev}")


@given(
    writes=st.lists(
        st.tuples(_ids, _revs, st.sampled_from(["write", "delete"])), min_size=1, max_size=12
    ),
    update_revs=st.sets(_revs),
    ledger=st.dictionaries(
        _ids, st.builds(Entry, rev=_revs, deleted=st.booleans(), deleted_at=st.just(1.0))
    ),
    data=st.data(),
)
def test_any_permutation_of_a_batch_gives_the_same_plan(
    writes: list[tuple[str, int, str]],
    update_revs: set[int],
    ledger: dict[str, Entry],
    data: st.DataObject,
) -> None:
    batch = [_op(id_, rev, kind, update_revs) for id_, rev, kind in writes]
    shuffled = data.draw(st.permutations(batch))

    assert plan(shuffled, ledger) == plan(batch, ledger)
