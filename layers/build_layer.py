#!/usr/bin/env python3
"""Build the ChromaDB Lambda layer: pinned manylinux wheels, trimmed, size-checked, recorded.

    python layers/build_layer.py                 # build/chromadb-layer.zip (cp312, for Lambda)
    python layers/build_layer.py --python local  # e.g. build/chromadb-layer-py311.zip (import test)

pip installs the pinned distributions (and their dependencies) for the target interpreter with
``--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --only-binary=:all:``, so the wheels are Lambda's whatever
machine builds them. Then every distribution in ``EXCLUDED`` is removed by its own RECORD: the
compactor never imports them (chromadb pulls them in for its server, its default embedding
model and its Kubernetes client). ``tests/layer/test_layer_imports.py`` proves by import that
nothing needed went. Stdlib only; idempotent (a stamp of the inputs skips an unchanged build).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
RECORD = ROOT / "layers" / "layer-size.json"
# Lambda's limit on a function's unzipped code plus all its layers.
LAMBDA_UNZIPPED_LIMIT = 262_144_000

# What the handlers import that Lambda's runtime lacks (or has too old: the runtime's botocore
# predates the checksum settings wiring.py uses), pinned as in pyproject.toml.
PINNED = ("chromadb", "numpy", "pydantic", "aws-lambda-powertools", "boto3", "botocore")

# Distributions chromadb depends on that the compactor, forwarder and query handler never
# import (found by the import test: each one removed, the layer still opens a PersistentClient).
EXCLUDED = {
    "kubernetes": "chromadb's k8s client for its distributed deployment (123 MB)",
    "onnxruntime": "runs the default embedding model; we always pass embeddings (80 MB)",
    "sympy": "onnxruntime's dependency",
    "mpmath": "sympy's dependency",
    "coloredlogs": "onnxruntime's dependency",
    "humanfriendly": "coloredlogs' dependency",
    "flatbuffers": "onnxruntime's dependency",
    "tokenizers": "default embedding model's tokenizer",
    "huggingface-hub": "downloads models; no downloads at run time",
    "hf-xet": "huggingface-hub's transfer backend",
    "fsspec": "huggingface-hub's dependency",
    "filelock": "huggingface-hub's dependency",
    "tqdm": "progress bars of model downloads",
    "uvicorn": "chromadb's HTTP server",
    "httptools": "uvicorn's dependency",
    "uvloop": "uvicorn's dependency",
    "watchfiles": "uvicorn's dependency",
    "websockets": "uvicorn's dependency",
    "typer": "chromadb's command line",
    "shellingham": "typer's dependency",
    "bcrypt": "chromadb server's auth",
    "build": "packaging tool",
    "pyproject-hooks": "build's dependency",
    "oauthlib": "kubernetes' dependency",
    "requests-oauthlib": "kubernetes' dependency",
    "websocket-client": "kubernetes' dependency",
    "durationpy": "kubernetes' dependency",
    "google-auth": "kubernetes' dependency",
    "rsa": "google-auth's dependency",
    "pyasn1": "google-auth's dependency",
    "pyasn1-modules": "google-auth's dependency",
    "cachetools": "google-auth's dependency",
    "aiohttp": "an async HTTP client only chromadb's async/cloud clients use",
    "aiohttp-retry": "aiohttp's dependency",
    "aiohappyeyeballs": "aiohttp's dependency",
    "aiosignal": "aiohttp's dependency",
    "frozenlist": "aiohttp's dependency",
    "multidict": "aiohttp's dependency",
    "propcache": "aiohttp's dependency",
    "yarl": "aiohttp's dependency",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python",
        default="3.12",
        help="target Python (default 3.12: Lambda's); 'local' for this interpreter's version",
    )
    parser.add_argument(
        "--if-reachable",
        action="store_true",
        help="skip (exit 0, saying why) when PyPI cannot be reached, instead of failing",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if inputs are unchanged")
    args = parser.parse_args()

    if args.python == "local":
        args.python = f"{sys.version_info.major}.{sys.version_info.minor}"
    tag = args.python.replace(".", "")
    out = BUILD / ("chromadb-layer.zip" if tag == "312" else f"chromadb-layer-py{tag}.zip")
    stamp = BUILD / f".layer-py{tag}.stamp"
    pins = _pins()
    inputs = hashlib.sha256(
        json.dumps([pins, sorted(EXCLUDED), Path(__file__).read_text()]).encode()
    ).hexdigest()
    if not args.force and out.exists() and stamp.exists() and stamp.read_text() == inputs:
        print(f"{out.relative_to(ROOT)} is up to date")
        return 0
    if args.if_reachable and not _pypi_reachable():
        print("PyPI is not reachable: the layer was not built (its import test will skip)")
        return 0

    target = BUILD / f"layer-py{tag}" / "python"
    shutil.rmtree(target.parent, ignore_errors=True)
    print(f"installing {len(pins)} pinned distributions for cp{tag} manylinux x86_64 ...")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--target", str(target),
            # Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): numpy 2.4 publishes
            # only manylinux_2_27+ wheels, so accept those as well as manylinux2014.
            "--platform", "manylinux_2_28_x86_64",
            "--platform", "manylinux2014_x86_64",
            "--implementation", "cp",
            "--python-version", args.python,
            "--only-binary=:all:",
            "--cache-dir", str(BUILD / "pip-cache"),
            *pins,
        ],
        check=True,
    )  # fmt: skip
    full = _tree_size(target)
    removed = _remove_excluded(target)
    _prune(target)
    trimmed = _tree_size(target)
    code = _tree_size(ROOT / "lambdas", skip=("__pycache__",))
    _zip(target.parent, out)

    figures = {
        "python": args.python,
        "installed_unzipped_bytes": full,
        "layer_unzipped_bytes": trimmed,
        "layer_zip_bytes": out.stat().st_size,
        "function_code_bytes": code,
        "total_unzipped_bytes": trimmed + code,
        "lambda_limit_bytes": LAMBDA_UNZIPPED_LIMIT,
        "removed_distributions": removed,
        "largest_packages_mb": _largest(target),
    }
    _report(figures)
    _record(tag, figures)
    if trimmed + code > LAMBDA_UNZIPPED_LIMIT:
        print(
            f"too big: layer + code is {(trimmed + code) / 1e6:.1f} MB unzipped, over Lambda's "
            f"{LAMBDA_UNZIPPED_LIMIT / 1e6:.1f} MB; deploy the compactor as a container image",
            file=sys.stderr,
        )
        return 1
    stamp.write_text(inputs)
    return 0


def _pins() -> list[str]:
    """``name==version`` for each PINNED distribution, read from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"]:
        name = requirement.split("==")[0].split("[")[0].strip().lower()
        if name in PINNED:
            found[name] = requirement.replace(" ", "")
    missing = sorted(set(PINNED) - set(found))
    if missing:
        raise SystemExit(f"pyproject.toml pins none of: {', '.join(missing)}")
    return [found[name] for name in PINNED]


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def _remove_excluded(target: Path) -> list[str]:
    """Delete each excluded distribution's files, as listed in its own RECORD."""
    removed = []
    for info in sorted(target.glob("*.dist-info")):
        name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("_", "-")
        if name not in EXCLUDED:
            continue
        with (info / "RECORD").open() as f:
            for row in csv.reader(f):
                path = target / row[0]
                if path.is_file() and target in path.resolve().parents:
                    path.unlink()
        shutil.rmtree(info, ignore_errors=True)
        removed.append(name)
    for directory in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return removed


def _prune(target: Path) -> None:
    """Bytecode caches are rebuilt on import; a package's own tests are never imported."""
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    for tests in list(target.glob("*/tests")) + list(target.glob("numpy/*/tests")):
        shutil.rmtree(tests, ignore_errors=True)


def _zip(root: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())
    tmp.replace(out)


def _tree_size(root: Path, skip: tuple[str, ...] = ()) -> int:
    return sum(
        p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not any(part in skip for part in p.parts)
    )


def _largest(target: Path, n: int = 8) -> dict[str, float]:
    sizes = {p.name: _tree_size(p) for p in target.iterdir() if p.is_dir()}
    top = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return {name: round(size / 1e6, 1) for name, size in top}


def _report(f: dict[str, object]) -> None:
    mb = lambda key: f"{int(f[key]) / 1e6:.1f} MB"  # type: ignore[call-overload]  # noqa: E731
    print(f"installed:  {mb('installed_unzipped_bytes')} unzipped")
    print(f"layer:      {mb('layer_unzipped_bytes')} unzipped, {mb('layer_zip_bytes')} zipped")
    print(f"with code:  {mb('total_unzipped_bytes')} of Lambda's {mb('lambda_limit_bytes')}")
    print(f"largest:    {f['largest_packages_mb']}")


def _record(tag: str, figures: dict[str, object]) -> None:
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    recorded[f"py{tag}"] = figures
    RECORD.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
