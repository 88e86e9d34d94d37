"""Builders shared by the infra tests."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pulumi
from infra.pipeline import CompactorPipeline, PipelineArgs, settings_from_config
from pulumi import Output

from chroma_compactor.resources import PipelineNames

ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count()


def build(config: dict[str, str] | None = None, **args: Any) -> CompactorPipeline:
    """A pipeline under a fresh logical name (mocks keep every resource of the session)."""
    name = f"p{next(_ids)}"
    settings = settings_from_config(config or {})
    return CompactorPipeline(
        name,
        PipelineArgs(
            settings=settings,
            names=PipelineNames.for_prefix(f"cc-{name}", settings.queue_type),
            code_dir=str(ROOT / "lambdas"),
            layer_zip=str(ROOT / "build" / "chromadb-layer.zip"),
            forwarder_name=f"cc-{name}-forwarder",
            compactor_name=f"cc-{name}-compactor",
            **args,
        ),
    )


def settled(p: CompactorPipeline) -> Output[list[Any]]:
    """Resolves once every child resource of the pipeline has been registered with the mocks."""
    children = [v for v in vars(p).values() if isinstance(v, pulumi.CustomResource)] + list(
        p.alarms
    )
    return Output.all(*(c.id for c in children))
