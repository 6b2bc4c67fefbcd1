# Two commands do all set-up on a fresh Debian machine:
#   make lab    install into .venv and start JupyterLab with workbench
#   make test   install what the tests need and run every test, lint and type check
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LAB_PORT ?= 8888
LAB_IP ?= 127.0.0.1
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# Extras the test suite needs. Each feature adds its extra here.
TEST_EXTRAS ?= test,lab,train

.PHONY: lab test install-lab install-test system-deps lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install-lab: $(BIN)/python
	$(BIN)/pip install -q -e '.[lab]'

# torch==2.13.0 first: a CPU wheel of it is what the tests use; installed after the extras,
# pip would resolve the `train` extra's torch range to a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

install-test: $(BIN)/python
	$(BIN)/pip install -q '$(TORCH_PIN)'
	$(BIN)/pip install -q -e '.[$(TEST_EXTRAS)]'

# System packages and services the tests talk to (SLURM, browsers, storage servers):
# one idempotent script per feature in scripts/setup/, run in name order.
system-deps:
	@set -e; for f in scripts/setup/*.sh; do [ -e "$$f" ] || continue; echo "== $$f"; bash "$$f"; done

lab: install-lab
	$(BIN)/jupyter lab --ip=$(LAB_IP) --port=$(LAB_PORT) --no-browser $(ROOT_FLAG)

lint: install-test
	$(BIN)/ruff check workbench tests benchmarks
	$(BIN)/ruff format --check workbench tests benchmarks

typecheck: install-test
	$(BIN)/mypy

pytest: install-test system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install-test
	$(BIN)/python benchmarks/launch.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
