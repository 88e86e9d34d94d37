"""Model-based: any delivery of the stream's messages, with crashes, converges on the table.

Random puts, metadata updates, deletes and re-creates over a small key space become full-state
messages as the forwarder makes them. They are delivered shuffled and duplicated, in batches,
to two compactors with separate caches, with crashes injected at random steps. After a clean
drain the snapshot must equal the model of the table, versions must only grow, and every
committed version must open with stock Chroma.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from chroma_compactor import ops
from chroma_compactor.cycle import Hooks, Step
from support import snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline

KEYS = ("a", "b", "c", "d")
CRASHES = [
    None,
    None,
    *(Step(s) for s in os.environ.get("CRASH_STEPS", "apply,upload,commit,delete").split(",") if s),
]
EXAMPLES = int(os.environ.get("CONVERGENCE_EXAMPLES", "25"))
_collections = itertools.count()


class SimulatedCrash(BaseException):
    """The process dies: nothing of the compactor's cleanup runs."""


class CrashAt(Hooks):
    def __init__(self, step: Step | None) -> None:
        self.step = step

    def before(self, step: Step, collection: str) -> None:
        if step is self.step:
            raise SimulatedCrash


writes = st.lists(
    st.tuples(st.sampled_from(KEYS), st.sampled_from(["put", "meta", "delete"]), st.integers(0, 3)),
    min_size=1,
    max_size=14,
)


def _history(
    collection: str, steps: list[tuple[str, str, int]]
) -> tuple[list[ops.Operation], dict[str, Any]]:
    """The messages the forwarder would send for these writes, and the table they leave."""
    rev: dict[str, int] = dict.fromkeys(KEYS, 0)
    table: dict[str, Any] = {}
    messages = []
    for key, kind, n in steps:
        if kind == "delete":
            if key in table:
                del table[key]
                messages.append(ops.delete(collection, key, rev[key]))
            continue
        rev[key] += 1
        seed = 100 * rev[key] + n
        old = table.get(key)
        embedding = vector(seed) if kind == "put" or old is None else old[0]
        table[key] = (embedding, f"doc {key} {rev[key]}", {"n": n, "rev": rev[key]})
        messages.append(ops.upsert(collection, key, rev[key], *table[key]))
    return messages, table


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # Shrinking a multi-cycle scenario takes minutes; the failing example is printed as drawn.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(steps=writes, data=st.data())
def test_any_delivery_with_crashes_converges_on_the_table(
    pipeline: Pipeline, reader: Reader, steps: list[tuple[str, str, int]], data: st.DataObject
) -> None:
    collection = f"col{next(_collections):05d}"
    messages, table = _history(collection, steps)
    note(f"writes: {steps}")
    # Duplicates and reordering, as a standard queue delivers.
    duplicates = data.draw(st.lists(st.sampled_from(messages), max_size=4)) if messages else []
    delivered = data.draw(st.permutations(messages + duplicates))
    crash_steps = st.sampled_from(CRASHES)
    versions: list[int] = []
    pending = list(delivered)
    while pending:
        size = data.draw(st.integers(1, 5))
        batch, pending = pending[:size], pending[size:]
        pipeline.send(*batch)
        compactor = pipeline.compactor(
            data.draw(st.sampled_from(["a", "b"])), CrashAt(data.draw(crash_steps))
        )
        event = pipeline.receive_event(visibility=1)
        try:
            pipeline.cycle(compactor, event)
        except SimulatedCrash:
            # The dead invocation's lease runs out and its messages' visibility expires.
            pipeline.clock.advance(pipeline.settings.lease_seconds + 1)
            _make_visible(pipeline, event)
        versions.append(compactor.pointers.read(collection).version)
        note(f"batch {[(m.op.value, m.id, m.rev) for m in batch]} -> v{versions[-1]}")

    pipeline.drain(pipeline.compactor("final"))

    assert versions == sorted(versions)
    final = pipeline.compactor("final").pointers.read(collection).version
    if not table and final == 0:
        return
    got = snapshot_state(reader, collection)
    for version in reader.store.list_versions(collection):
        older = snapshot_state(reader, collection, version)
        note(f"v{version}: { {k: (v[0][:4], v[1]) for k, v in older.items()} }")
    note(f"want: { {k: (v[0].tobytes()[:4], v[1]) for k, v in table.items()} }")
    assert sorted(got) == sorted(table)
    for key, (embedding, document, metadata) in table.items():
        note(f"{key}: snapshot {got[key][1:]} table {(document, metadata)}")
        assert np.allclose(np.frombuffer(got[key][0], dtype="<f4"), embedding, rtol=1e-5, atol=1e-7)
        assert got[key][1:] == (document, metadata)
    _every_version_opens(reader, collection)


def _make_visible(pipeline: Pipeline, event: list[Any]) -> None:
    deadline = time.monotonic() + 5
    while sum(pipeline.queue_depth()) and pipeline.queue_depth()[1] and time.monotonic() < deadline:
        time.sleep(0.1)


def _every_version_opens(reader: Reader, collection: str) -> None:
    import chromadb

    for version in reader.store.list_versions(collection):
        manifest, snapshot = reader.sync(collection, version)
        client = chromadb.PersistentClient(path=str(snapshot.chroma_dir))
        assert client.get_collection(collection).count() == manifest.record_count
        client.close()


# Slow (minutes), and not yet green. With crashes at apply, commit and delete combined,
# `--hypothesis-seed=1` fails, and the failure looks like a read-side problem, not a lost update:
# in the failing run the committed v2 holds d's newest embedding when opened a second time, but
# the first open of the same downloaded files returned another record's vector for d (ids and
# embeddings out of step). Documents and metadata were right both times. See docs/traits.md;
# issue #6 must pin it down. It passes with crashes at any one step alone
# (CRASH_STEPS=apply|upload|commit|delete) and with none (CRASH_STEPS=).
# Run with `make test-slow`.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning"),
]
