"""A local stack in a subprocess (`chroma-compactor local up --no-workers`), as an operator runs it."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest
from e2e_support import LocalProcess, start_local

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalProcess]:
    """Standard queue; parametrize indirectly with "fifo" for a FIFO one."""
    stack = start_local(tmp_path / "data", getattr(request, "param", "standard"))
    try:
        yield stack
    finally:
        if stack.process.poll() is None:
            try:
                stack.stop(timeout=30)
            except subprocess.TimeoutExpired:
                stack.process.kill()  # saving state is slow on a loaded machine; tests need none
                stack.process.wait()
