"""Model-based: any delivery of the stream's messages, under any fault, converges on the table.

Random puts, metadata updates, deletes and re-creates over a small key space become full-state
messages as the forwarder makes them. They are delivered shuffled and duplicated, in batches,
to three compactors with separate caches. Any batch may crash its compactor at a step, or have
another compactor take over at a step (with or without the first one's lease running out), and
a share of S3 and DynamoDB requests fail as AWS fails them. After the faults stop and the queue
drains, the snapshot must equal the table, versions must only have grown, and every retained
version must open with stock Chroma.

``CONVERGENCE_EXAMPLES`` scales the run (``make soak`` runs thousands); every run adds its
tally to the JSON file ``CONVERGENCE_REPORT`` names, for docs/reliability.md.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from chroma_compactor import ops
from chroma_compactor.cycle import Step
from chroma_compactor.redrive import redrive
from chroma_compactor.settings import QueueType
from faults import At, SimulatedCrash, crash
from support import snapshot_state, vector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chroma_compactor.reader import Reader
    from faults import FlakyAws, InFlight
    from support import Pipeline

KEYS = ("a", "b", "c", "d")
COMPACTORS = ("a", "b", "c")
STEPS = [Step(s) for s in os.environ.get("CRASH_STEPS", ",".join(Step)).split(",") if s]
EXAMPLES = int(os.environ.get("CONVERGENCE_EXAMPLES", "100"))
REPORT = os.environ.get("CONVERGENCE_REPORT")
_collections = itertools.count()
tally: Counter[str] = Counter()


@dataclass(frozen=True)
class Fault:
    """What happens to one batch's cycle."""

    kind: str  # "none", "crash" or "takeover"
    step: Step | None = None
    lease_expires: bool = False  # for a takeover: the first holder's lease ran out


faults = st.one_of(
    st.just(Fault("none")),
    st.builds(Fault, st.just("crash"), st.sampled_from(STEPS)),
    st.builds(Fault, st.just("takeover"), st.sampled_from(STEPS), st.booleans()),
)
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
@pytest.mark.parametrize("queue_type", [QueueType.STANDARD, QueueType.FIFO], indirect=True)
def test_any_delivery_under_any_fault_converges_on_the_table(
    pipeline: Pipeline,
    reader: Reader,
    in_flight: InFlight,
    flaky_aws: FlakyAws,
    steps: list[tuple[str, str, int]],
    data: st.DataObject,
) -> None:
    _start_clean(pipeline, in_flight)
    collection = f"col{next(_collections):05d}"
    messages, table = _history(collection, steps)
    note(f"writes: {steps}")
    flaky_aws.reseed(
        rate=data.draw(st.sampled_from([0.0, 0.0, 0.03, 0.1]), label="fault rate"),
        seed=data.draw(st.integers(0, 2**16), label="fault seed"),
    )
    # Duplicates and reordering, as a standard queue delivers.
    duplicates = data.draw(st.lists(st.sampled_from(messages), max_size=4)) if messages else []
    pending = list(data.draw(st.permutations(messages + duplicates)))
    versions: list[int] = []

    def run(name: str, fault: Fault) -> None:
        """One invocation of compactor ``name`` on the next batch, with ``fault`` at its step."""
        nonlocal pending
        size = data.draw(st.integers(1, 5))
        batch, pending = pending[:size], pending[size:]
        pipeline.send(*batch)
        note(f"{name}: batch {[(m.op.value, m.id, m.rev) for m in batch]}, {fault}")
        tally[f"cycles with fault: {fault.kind}"] += 1
        action = crash
        if fault.kind == "takeover":
            other = data.draw(st.sampled_from([c for c in COMPACTORS if c != name]))
            action = lambda: take_over(other, fault.lease_expires)  # noqa: E731
        hooks = At(fault.step, action) if fault.kind != "none" else None
        event = pipeline.receive_event(visibility=1)
        try:
            pipeline.cycle(pipeline.compactor(name, hooks), event)
        except SimulatedCrash:
            # The dead invocation's lease runs out and its messages' visibility expires.
            pipeline.clock.advance(pipeline.settings.lease_seconds + 1)
            in_flight.expire()
        with flaky_aws.paused():
            versions.append(pipeline.compactor(name).pointers.read(collection).version)

    def take_over(name: str, lease_expires: bool) -> None:
        if lease_expires:
            pipeline.clock.advance(pipeline.settings.lease_seconds + 1)
        run(name, Fault("none"))

    while pending:
        run(data.draw(st.sampled_from(COMPACTORS)), data.draw(faults))

    with flaky_aws.paused():
        tally.update(f"AWS faults injected: {k}" for k in flaky_aws.take_injected())
        _drain(pipeline, in_flight)
        assert versions == sorted(versions)
        final = pipeline.compactor("final").pointers.read(collection).version
        tally["scenarios"] += 1
        if not table and final == 0:
            return
        got = snapshot_state(reader, collection)
        assert sorted(got) == sorted(table), "lost or resurrected ids"
        for key, (embedding, document, metadata) in table.items():
            note(f"{key}: snapshot {got[key][1:]} table {(document, metadata)}")
            assert np.allclose(
                np.frombuffer(got[key][0], dtype="<f4"), embedding, rtol=1e-5, atol=1e-7
            )
            assert got[key][1:] == (document, metadata)
        _every_version_opens(reader, collection)


def _start_clean(pipeline: Pipeline, in_flight: InFlight) -> None:
    """Examples share the fixture's queues; one that failed may have left messages behind."""
    in_flight.expire()
    sqs = pipeline.clients.sqs
    for url in (pipeline.created.queue_url, pipeline.created.dlq_url):
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for m in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    in_flight.forget()


def _drain(pipeline: Pipeline, in_flight: InFlight) -> None:
    """Everything hidden comes back; what the DLQ took is redriven, as the runbook says."""
    final = pipeline.compactor("final")
    for _ in range(5):
        in_flight.expire()
        pipeline.drain(final)
        moved = redrive(pipeline.clients.sqs, pipeline.created.queue_url)
        tally["messages redriven from the DLQ"] += moved
        if not moved and pipeline.queue_depth() == (0, 0):
            return
    raise AssertionError(f"queue did not drain: {pipeline.queue_depth()}")


def _every_version_opens(reader: Reader, collection: str) -> None:
    for version in reader.store.list_versions(collection):
        manifest, snapshot = reader.sync(collection, version)
        client = chromadb.PersistentClient(path=str(snapshot.chroma_dir))
        assert client.get_collection(collection).count() == manifest.record_count
        client.close()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if REPORT:
        path = Path(REPORT)
        previous = Counter(json.loads(path.read_text())) if path.exists() else Counter()
        path.write_text(json.dumps(dict(previous + tally), indent=2, sort_keys=True))


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
