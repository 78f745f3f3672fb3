# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: demo test install install-dev lint bench gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned first so that the package's `torch>=` range resolves to the local CPU build
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/comp demo

test: install-dev
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check comp tests bench
	$(BIN)/ruff format --check comp tests bench

bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python bench/run_all.py

# every GPU figure in one command (under 8 minutes on one H200); without CUDA it says so and exits
gpu-check: install
	$(BIN)/python bench/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
