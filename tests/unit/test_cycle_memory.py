"""What a cycle keeps in memory per message while it applies a batch."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from chroma_compactor import ops
from chroma_compactor.cycle import _Work
from chroma_compactor.queue import QueueMessage

DIM = 1536  # 6 KiB packed, ~8 KiB as the base64 of a message body


def test_a_batch_keeps_each_operation_but_not_its_json_body() -> None:
    vector = np.ones(DIM, dtype=np.float32)
    work = _Work(lambda op: op.collection)
    tracemalloc.start()
    try:
        messages = [
            QueueMessage(f"m{i}", f"h{i}", ops.encode(ops.upsert("docs", f"id{i}", 1, vector)), "q")
            for i in range(200)
        ]
        work.add(messages)
        del messages
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(work.take("docs")) == 200
    # The packed vector (6 KiB) and a few hundred bytes of bookkeeping; the body would add 8 KiB.
    assert kept / 200 < 4 * DIM + 2048
