# Every target bootstraps what it needs; a second run reinstalls nothing unless pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install run test test-all test-slow lint format clean soak reliability layer layer-check bench bench-scale

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install pinned dependencies (idempotent)

lint: $(STAMP)  ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check lambdas infra scripts layers tests
	$(BIN)/ruff format --check lambdas infra scripts layers tests
	$(BIN)/mypy

format: $(STAMP)  ## Apply ruff format and fixes
	$(BIN)/ruff format lambdas infra scripts layers tests
	$(BIN)/ruff check --fix lambdas infra scripts layers tests

run: $(STAMP)  ## The whole pipeline locally on sample data (moto server + real ChromaDB)
	$(BIN)/chroma-compactor demo

test: lint layer-check  ## Lint, type-check and run the test suite (slow suites excluded)
	$(BIN)/pytest -m "not slow"

test-slow: $(STAMP)  ## Run only the slow suites
	$(BIN)/pytest -m slow

test-all: lint  ## Everything, slow suites included
	$(BIN)/pytest

soak: $(STAMP)  ## Thousands of fault scenarios (SOAK_EXAMPLES, default 2000 per queue type)
	CONVERGENCE_EXAMPLES=$${SOAK_EXAMPLES:-2000} $(BIN)/pytest -p no:cacheprovider tests/integration/test_convergence.py

reliability: $(STAMP)  ## Run the fault suites and regenerate docs/reliability.md
	$(BIN)/python scripts/reliability_report.py

layer: $(STAMP)  ## Build the ChromaDB Lambda layer (build/chromadb-layer.zip), size-checked
	$(BIN)/python layers/build_layer.py

layer-check: $(STAMP)  ## Build the same layer for this machine's Python, for its import test
	$(BIN)/python layers/build_layer.py --python local --if-reachable

bench: $(STAMP)  ## Seed vs ours vs limit, shards 1/2/4, query latency; writes docs/performance.{md,json,png}
	$(BIN)/chroma-compactor bench

bench-scale: $(STAMP)  ## Cycle time, upload, RSS at 10K-100K records, query latency at 100K (builds fixtures once; long)
	$(BIN)/chroma-compactor bench --scale

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
