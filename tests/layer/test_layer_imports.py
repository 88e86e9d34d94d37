"""The trimmed layer holds everything the handlers import: proven on a copy, with nothing else.

The layer for Lambda is built for CPython 3.12; this machine runs 3.11, so the same trimmed set
is built for this interpreter (`python layers/build_layer.py --python local`, which `make test`
runs) and
imported here with only the standard library, the layer and our code on ``sys.path``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER_LOCAL = (
    ROOT / "build" / f"chromadb-layer-py{sys.version_info.major}{sys.version_info.minor}.zip"
)
LAYER_312 = ROOT / "build" / "chromadb-layer.zip"
RECORD = ROOT / "layers" / "layer-size.json"

PROBE = """
import sys, tempfile
assert not any("site-packages" in p for p in sys.path), sys.path
import chromadb
from chromadb.config import Settings
path = tempfile.mkdtemp()
client = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))
col = client.get_or_create_collection(
    "probe", embedding_function=None, metadata={"hnsw:space": "cosine"}
)
col.upsert(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["x", "y"])
hits = col.query(query_embeddings=[[1.0, 0.1]], n_results=1)["ids"][0]
client.close()
import enhanced_compaction_handler, stream_forwarder, query_handler
print(hits, chromadb.__file__)
"""


@pytest.mark.skipif(not LAYER_LOCAL.exists(), reason="layer not built: run `make layer-check`")
def test_the_layer_alone_runs_chroma_and_imports_every_handler(tmp_path: Path) -> None:
    with zipfile.ZipFile(LAYER_LOCAL) as zf:
        zf.extractall(tmp_path / "layer")
    shutil.copytree(ROOT / "lambdas", tmp_path / "code", ignore=shutil.ignore_patterns("*.pyc"))
    stdlib = [p for p in sys.path if p.startswith(sys.base_prefix) and "site-packages" not in p]
    path = [str(tmp_path / "code"), str(tmp_path / "layer" / "python"), *stdlib]
    script = f"import sys; sys.path[:] = {path!r}\n" + PROBE

    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("['a']")
    assert str(tmp_path / "layer") in result.stdout  # chromadb came from the layer


@pytest.mark.skipif(not LAYER_312.exists(), reason="layer not built: run `make layer`")
def test_the_lambda_layer_and_code_fit_lambdas_unzipped_limit() -> None:
    figures = json.loads(RECORD.read_text())["py312"]

    assert figures["total_unzipped_bytes"] < figures["lambda_limit_bytes"]
    with zipfile.ZipFile(LAYER_312) as zf:
        unzipped = sum(i.file_size for i in zf.infolist())
        assert all(name.startswith("python/") for name in zf.namelist())
    assert unzipped == figures["layer_unzipped_bytes"]
