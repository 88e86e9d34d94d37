"""A local stack in a subprocess (`chroma-compactor local up --no-workers`), as an operator runs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from e2e_support import LocalProcess, start_local

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalProcess]:
    stack = start_local(tmp_path / "data")
    try:
        yield stack
    finally:
        if stack.process.poll() is None:
            stack.stop()
