# Two entry points (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUITE  ?= default
# Offline by design: no model weights or data sets are ever fetched from a hub.
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export MPLBACKEND=Agg
export TOKENIZERS_PARALLELISM=false

.PHONY: setup run test test-all lint clean-store

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# Without CUDA, install the CPU torch first: an unpinned torch pulls a multi-GB CUDA build.
	@if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install -q torch==2.13.0; fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

run: setup
	$(BIN)/slbench run $(SUITE)

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/ruff check benchmark tests benchmarks
	$(BIN)/mypy

clean-store:
	rm -rf results/store
