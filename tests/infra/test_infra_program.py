"""`infra/__main__.py` as Pulumi runs it: stack config in, stack outputs out."""

from __future__ import annotations

import ast
import json
import runpy
from typing import TYPE_CHECKING, Any

import pulumi
import pytest
from infra.pipeline import InvalidStackConfig
from infra_mocks import MOCKS
from infra_support import ROOT, settled
from pulumi import Output

from chroma_compactor import settings as settings_module
from infra import dashboard

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PROJECT = "chroma-compactor"


@pytest.fixture
def stack_config(tmp_path: Path) -> Iterator[dict[str, str]]:
    layer = tmp_path / "chromadb-layer.zip"
    layer.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    values = {f"{PROJECT}:layerZip": str(layer)}
    yield values
    pulumi.runtime.set_all_config({})


def run_program(
    config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    pulumi.runtime.set_all_config(config)
    exports: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exports.__setitem__)
    module = runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__")
    return module, exports


@pulumi.runtime.test
def test_program_exports_the_settings_names(
    stack_config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Output[Any]:
    stack_config |= {f"{PROJECT}:namePrefix": "cc-prog", f"{PROJECT}:queueType": "fifo"}
    module, exports = run_program(stack_config, monkeypatch)
    p = module["pipeline"]
    for name in (
        "SOURCE_TABLE_NAME",
        "CONTROL_TABLE_NAME",
        "SNAPSHOT_BUCKET",
        "SNAPSHOT_PREFIX",
        "COMPACTION_QUEUE_URL",
        "QUEUE_TYPE",
    ):
        assert getattr(settings_module, name) == name
        assert name in exports
    assert {
        "COMPACTION_DLQ_URL",
        "STREAM_FAILURE_QUEUE_URL",
        "FORWARDER_FUNCTION_NAME",
        "COMPACTOR_FUNCTION_NAME",
        "DASHBOARD_NAME",
    } <= set(exports)
    assert exports["QUEUE_TYPE"] == "fifo"

    def check(values: list[Any]) -> None:
        out = dict(zip(exports, values[1:], strict=True))
        assert out["COMPACTION_QUEUE_URL"].endswith("/cc-prog-compaction.fifo")
        assert out["CONTROL_TABLE_NAME"] == "cc-prog-control"
        assert out["COMPACTOR_FUNCTION_NAME"] == "cc-prog-compactor"
        env = MOCKS.resources[f"{p._name}-compactor"][1]["environment"]["variables"]
        # The outputs a CLI reads are the values the Lambdas were given.
        for key in (
            "SOURCE_TABLE_NAME",
            "CONTROL_TABLE_NAME",
            "SNAPSHOT_BUCKET",
            "SNAPSHOT_PREFIX",
            "COMPACTION_QUEUE_URL",
            "QUEUE_TYPE",
        ):
            assert env[key] == out[key], key

    return Output.all(settled(p), *exports.values()).apply(check)


def test_program_refuses_fifo_with_window_before_declaring_anything(
    stack_config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_config |= {
        f"{PROJECT}:queueType": "fifo",
        f"{PROJECT}:compactionBatchingWindowSeconds": "30",
    }
    before = len(MOCKS.resources)
    with pytest.raises(InvalidStackConfig, match=f"{PROJECT}:compactionBatchingWindowSeconds"):
        run_program(stack_config, monkeypatch)
    assert len(MOCKS.resources) == before


def test_program_names_the_missing_layer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = {f"{PROJECT}:layerZip": str(tmp_path / "missing.zip")}
    try:
        with pytest.raises(InvalidStackConfig, match="make layer"):
            run_program(config, monkeypatch)
    finally:
        pulumi.runtime.set_all_config({})


def _handler_metric_names(path: Path) -> set[str]:
    """Metric names in `metrics.add_metric(name=...)` calls and `("Name", value)` pairs."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_metric":
            for kw in node.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    names.add(str(kw.value.value))
        if (
            isinstance(node, ast.Tuple)
            and len(node.elts) == 2
            and isinstance(node.elts[0], ast.Constant)
            and isinstance(node.elts[0].value, str)
            and node.elts[0].value[:1].isupper()
        ):
            names.add(node.elts[0].value)
    return names


def _cycle_steps() -> set[str]:
    tree = ast.parse((ROOT / "lambdas" / "chroma_compactor" / "cycle.py").read_text())
    (step,) = (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Step")
    return {
        str(a.value.value)
        for a in step.body
        if isinstance(a, ast.Assign) and isinstance(a.value, ast.Constant)
    }


def test_dashboard_shows_the_metrics_the_handlers_emit() -> None:
    compactor = _handler_metric_names(ROOT / "lambdas" / "enhanced_compaction_handler.py")
    compactor |= {f"Phase_{s}" for s in _cycle_steps() | {"retention"}}
    forwarder = _handler_metric_names(ROOT / "lambdas" / "stream_forwarder.py")
    assert dashboard.emf_metric_names() == {"compactor": compactor, "forwarder": forwarder}

    body = json.loads(
        dashboard.dashboard_body(
            region="us-east-1", queue_name="q", dlq_name="d", compactor_name="c", forwarder_name="f"
        )
    )
    shown = {(m[0], m[1], m[3]) for w in body["widgets"] for m in w["properties"]["metrics"]}
    for service, names in dashboard.emf_metric_names().items():
        for n in names:
            assert ("ChromaCompactor", n, service) in shown
    assert all(w["properties"]["region"] == "us-east-1" for w in body["widgets"])
