# ptpeft: `make run` sets up and trains on the embedded default; `make test` sets up and tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PTPEFT := $(VENV)/bin/ptpeft
STAMP := $(VENV)/.installed
# torch is installed first so pip does not pull a multi-GB CUDA build on CPU-only machines;
# add e.g. TORCH_PIP_ARGS="--index-url <your CPU wheel index>" where no local CPU wheel exists.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
ARGS ?=

.PHONY: install run test test-fast lint bench bench-gpu tune paper paper-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: install
	$(PTPEFT) train $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: install
	$(VENV)/bin/ruff check ptpeft_cli tests scripts

bench: install
	$(PY) scripts/bench.py $(ARGS)

# Real-size checkpoints (random weights, shapes from ptpeft_cli/models/real_configs) on a CUDA GPU;
# ARGS=--tiny: the same code at toy size on the CPU. Writes outputs/bench/gpu.json and docs/benchmarks.md.
bench-gpu: install
	$(PY) scripts/bench_gpu.py $(ARGS)

# Rates for every method and task chosen on the val split (conf/rates/tuned.yaml, which make
# paper's presets read); resumable: a rerun keeps finished sweeps. Options: ARGS (ptpeft tune --help).
tune: install
	$(PTPEFT) tune update_doc=docs/results.md $(ARGS)

paper: install
	bash scripts/paper.sh full

paper-quick: install
	bash scripts/paper.sh quick

clean:
	rm -rf outputs/train outputs/sweeps outputs/.stage_cache multirun .pytest_cache
