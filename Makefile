# The two commands (see README): `make notebooks` runs every notebook, `make test` runs every check.
# Both create .venv if it is missing, install vitnb with its dev extra, and fetch the data first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# CPU-only machines: `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs torch and torchvision
# from PyTorch's CPU index first, which skips the ~3 GB of CUDA libraries the default Linux wheel brings.
TORCH_INDEX ?=
# Jupyter refuses to start as root without --allow-root (containers, CI).
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup data notebooks test test-fast test-browser lab benchmarks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

data: setup
	$(BIN)/python -m vitnb fetch-data

# `make notebooks NOTEBOOKS=notebooks/01_patching.ipynb` runs only the ones named.
NOTEBOOKS ?= notebooks/*.ipynb
notebooks: data
	$(BIN)/python tools/run_notebooks.py $(NOTEBOOKS)

# The quick notebook run keeps its checkpoints in runs/quick, so it never replaces the full run's models.
test: data
	$(BIN)/ruff check .
	$(BIN)/ruff format --check vitnb tests benchmarks tools
	$(BIN)/lint-imports
	VITNB_PROFILE=quick $(BIN)/python -m pytest tests -m "not browser"
	VITNB_PROFILE=quick VITNB_RUNS=$(CURDIR)/runs/quick $(BIN)/python -m pytest --nbval-lax --nbval-current-env notebooks/
	VITNB_PROFILE=quick $(BIN)/python -m pytest tests -m browser

# The unit tests without the slow ones (DDP, base-size models, CLI end to end, browser): for quick checks while editing.
test-fast: data
	VITNB_PROFILE=quick $(BIN)/python -m pytest tests -m "not slow and not browser"

test-browser: data
	VITNB_PROFILE=quick $(BIN)/python -m pytest tests -m browser

lab: data
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/

clean:
	rm -rf $(VENV) runs
