# sparsenb: `make paper-tables` (the paper's released results), `make demo` (the mini pipeline at
# demonstration scale), `make test` (the tests). Each sets up .venv first.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.sparsenb-stamp

# Never touch the network from deepsparse/sparsezoo or onnxruntime.
export NM_DISABLE_ANALYTICS := 1
export ORT_DISABLE_TELEMETRY := 1
# glibc's default allocator costs PyTorch half its CPU time here in page faults (measured: 2x on ResNet50).
export MALLOC_ARENA_MAX := 1
export MALLOC_MMAP_THRESHOLD_ := 4294967296
export MALLOC_TRIM_THRESHOLD_ := 68719476736
export MALLOC_TOP_PAD_ := 1073741824
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: setup test lint format demo study upstream unit notebooks lab bench paper-tables beyond

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup.sh
	bash .ci/setup.sh

# everything CI runs: the linter, every test (slow ones too) and every notebook under nbval
test: setup lint
	$(BIN)/python -m pytest -q tests notebooks --nbval-lax --durations=15

# ruff: lint (sparsenb, tests, notebooks) and the formatter's check of sparsenb and tests (pyproject.toml)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check sparsenb tests

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format sparsenb tests

# the fast tests while editing (no slow training, no notebooks): ~70 s on 2 cores
unit: setup
	$(BIN)/python -m pytest -q tests -m "not slow"

notebooks: setup
	$(BIN)/python -m pytest -q --nbval-lax notebooks

# Table 1, C.1/C.2, the findings and Figures 2-3 from the paper's released results: the first result, ~1 min
paper-tables: setup
	$(BIN)/python -m sparsenb paper-tables

demo: setup
	$(BIN)/python -m sparsenb demo

# The whole mini grid (linear and full finetuning, then 07_summary) on the upstream reference set
# (outputs/upstream/mini, built by `make upstream`; refused until it verifies). Resumable.
study: setup
	$(BIN)/python -m sparsenb study

# Rebuild the mini upstream reference checkpoints (outputs/upstream/mini): what is missing or stale,
# two workers with one core each (each takes the next model nobody holds; both resumable).
upstream: setup
	$(BIN)/python -m sparsenb upstream plan
	OMP_NUM_THREADS=1 $(BIN)/python -m sparsenb upstream build & \
	  OMP_NUM_THREADS=1 $(BIN)/python -m sparsenb upstream build; wait
	$(BIN)/python -m sparsenb upstream verify

# 08_beyond_accuracy: its robustness runs (a resumable sweep) and its summary over the study's records
# (calibration, per-class cost, transfer-PIEs, robustness, findings) in outputs/summary/beyond/
beyond: setup
	$(BIN)/python -m sparsenb sweep params/sweeps/mini_beyond.yaml --jobs 2
	mkdir -p outputs/runs/beyond
	$(BIN)/papermill --cwd notebooks -k python3 notebooks/08_beyond_accuracy.ipynb outputs/runs/beyond/08_beyond_accuracy.ipynb

bench: setup
	$(BIN)/python -m sparsenb bench loader

# JupyterLab on localhost over notebooks/ with the kernel python3 = .venv; it prints the URL with its token
lab: setup
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/
