"""Pulumi mocks are installed here, before any test imports the program module."""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi
from infra_mocks import MOCKS

# `infra` is a package at the project root (Pulumi runs it as a directory program).
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

pulumi.runtime.set_mocks(MOCKS, project="chroma-compactor", stack="test", preview=False)
