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
TEST_EXTRAS ?= test,lab,lab-test,dashboards,cloud,cloud-test,slurm,data,test-data,train

.PHONY: lab test install-lab install-test system-deps lint typecheck pytest notebooks bench bench-slurm clean extension extension-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch==2.13.0 first: a CPU wheel of it is what the tests use; installed after the extras,
# pip would resolve the `train` extra's torch range to a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

# What `make lab` installs: the extension and every CPU feature a notebook user reaches for.
LAB_EXTRAS ?= lab,dashboards,data,train,slurm,cloud

install-lab: $(BIN)/python
	$(BIN)/pip install -q '$(TORCH_PIN)'
	$(BIN)/pip install -q -e '.[$(LAB_EXTRAS)]'

install-test: $(BIN)/python
	$(BIN)/pip install -q '$(TORCH_PIN)'
	$(BIN)/pip install -q -e '.[$(TEST_EXTRAS)]'

# System packages and services the tests talk to (SLURM, browsers, storage servers):
# one idempotent script per feature in scripts/setup/, run in name order.
system-deps:
	@set -e; for f in scripts/setup/*.sh; do [ -e "$$f" ] || continue; echo "== $$f"; bash "$$f"; done

# The JupyterLab extension (extension/ -> workbench/labextension). `pip install` builds it
# once; this rebuilds it whenever its sources change. jlpm comes from the venv.
JLPM := PATH="$(abspath $(BIN)):$$PATH" jlpm
LABEXT := workbench/labextension/package.json
EXT_SOURCES := $(wildcard extension/src/*.ts extension/src/*.tsx extension/src/*/*.ts \
	extension/src/*/*.tsx extension/style/*) extension/package.json extension/yarn.lock \
	extension/tsconfig.json

$(LABEXT): $(EXT_SOURCES)
	cd extension && $(JLPM) install && $(JLPM) build:prod
	@# pip copies the built extension into the environment: copy the fresh build.
	$(BIN)/pip install -q --no-deps -e .

extension: $(LABEXT)

# Lint (eslint, prettier) and unit-test (jest) the extension's TypeScript.
extension-test: install-test $(LABEXT)
	cd extension && $(JLPM) lint:check && $(JLPM) test

lab: install-lab extension
	$(BIN)/jupyter lab --ip=$(LAB_IP) --port=$(LAB_PORT) --no-browser $(ROOT_FLAG)

lint: install-test
	$(BIN)/ruff check workbench tests benchmarks
	$(BIN)/ruff format --check workbench tests benchmarks

typecheck: install-test
	$(BIN)/mypy

pytest: install-test system-deps extension
	$(BIN)/pytest $(PYTEST_ARGS)

# Every tutorial runs end to end; saved outputs must match (volatile parts sanitized).
# scripts/test-notebooks: a temporary workbench home, and this checkout's SLURM for
# 06-slurm (started if needed, unless SLURM_CONF is set).
notebooks: install-test system-deps
	VENV_BIN=$(abspath $(BIN)) scripts/test-notebooks

test: lint typecheck extension-test pytest notebooks

# Each prints workbench vs the raw library it wraps, measured in the same run.
bench: install-test
	$(BIN)/python benchmarks/launch.py
	$(BIN)/python benchmarks/sampler.py
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/train.py

# Needs a SLURM: `sudo scripts/slurm-up` and the SLURM_CONF it prints (docs/slurm.md).
bench-slurm: install-test
	$(BIN)/python benchmarks/slurm_launch.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache extension/node_modules extension/lib \
		workbench/labextension
