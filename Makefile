# One Makefile for people and CI. `make demo` and `make test` create .venv when it is missing.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build, and
# 2.13.0 is the CPU wheel the project's machines carry.
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet
STAMP  := $(VENV)/.mlcp-installed

.PHONY: venv demo test lint format docs bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing $(TORCH) and mlcp[dev] into $(VENV) (a few minutes the first time)" >&2
	$(PIP) install "$(TORCH)" 2> >(grep -v "is ignored: it is neither" >&2)
	$(PIP) install -e ".[dev]" 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlcp demo

# Two pytest-xdist workers take whole modules, the slow ones first; then the tests marked
# `alone` (timing under a load they make themselves) run by themselves. Exit code 5 is
# "nothing selected", e.g. when PYTEST_ARGS names files without such a test.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not alone" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The references in docs/ are read off the code; a test fails when they are stale.
docs: $(STAMP)
	$(BIN)/python docs/generate.py

bench: $(STAMP)
	$(PIP) install -e ".[bench]" 2> >(grep -v "is ignored: it is neither" >&2)
	$(BIN)/python benchmarks/registry_bench.py
	$(BIN)/python benchmarks/features_bench.py
	$(BIN)/python benchmarks/serving_bench.py
	$(BIN)/python benchmarks/serving_bench.py --cells zipf,overload --rounds 3
	$(BIN)/python benchmarks/rollback_bench.py
	$(BIN)/python benchmarks/serving_gpu.py
	$(BIN)/python benchmarks/drift_bench.py

clean:
	rm -rf .mlcp .pytest_cache .mypy_cache .ruff_cache
