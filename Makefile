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

# Installs come from the committed locks in requirements/ (scripts/lock, `make lock`), with no
# dependency resolution at install time: scripts/install-env bootstraps uv into the venv with
# pip, `uv pip sync`s the lock, adds torch as a CPU build (scripts/install-torch; set
# TORCH_VARIANT=cuda on a GPU workstation) and workbench itself. Quick when nothing changed.
export VENV PYTHON

.PHONY: lab test test-fast install-lab install-test lock lock-check system-deps lint typecheck \
	pytest notebooks bench bench-slurm bench-scale clean extension extension-test

install-lab:
	@scripts/install-env lab

install-test:
	@scripts/install-env test

# Re-resolve the locks after changing dependencies in pyproject.toml (pins kept where they
# still fit; UPGRADE=1 takes the newest releases). Commit requirements/*.txt.
lock: install-test
	UV=$(BIN)/uv scripts/lock

# Fails when pyproject.toml and the locks disagree; resolves the gpu extras for Python 3.12.
lock-check: install-test
	UV=$(BIN)/uv scripts/lock --check

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
	cd extension && $(JLPM) install --immutable && $(JLPM) build:prod
	@# The editable install links the built extension into the environment: refresh it.
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/uv pip install -q --python $(BIN)/python --no-deps \
		--no-build-isolation -e .

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

# The quick loop: unit tests that start no cluster, server, browser or process (the list is
# in tests/conftest.py; a fast test that starts a process fails). Under a minute.
test-fast: install-test
	$(BIN)/pytest -m fast -q $(PYTEST_ARGS)

# Every tutorial runs end to end; saved outputs must match (volatile parts sanitized).
# scripts/test-notebooks: a temporary workbench home, and this checkout's SLURM for
# 06-slurm (started if needed, unless SLURM_CONF is set).
notebooks: install-test system-deps
	VENV_BIN=$(abspath $(BIN)) scripts/test-notebooks

test: lock-check lint typecheck extension-test pytest notebooks

# Each prints workbench vs the raw library it wraps, measured in the same run.
bench: install-test
	$(BIN)/python benchmarks/launch.py
	$(BIN)/python benchmarks/sampler.py
	$(BIN)/python benchmarks/load.py --sizes 250 --extras
	$(BIN)/python benchmarks/train.py

# Needs a SLURM: `sudo scripts/slurm-up` and the SLURM_CONF it prints (docs/slurm.md).
bench-slurm: install-test
	$(BIN)/python benchmarks/slurm_launch.py

# Cost curves over sizes, each against the raw library in the same run (benchmarks/scale.py):
# data 10 MB-2 GB (local and S3), XGBoost at 1-4 workers, int8 over model sizes, SLURM at
# 1-16 jobs (this checkout's SLURM started if SLURM_CONF is unset). Tables and plots go to
# docs/performance.md. Under 15 minutes on the 2-core VM. BENCH_ARGS="--only data --quick"
bench-scale: install-test
	VENV_BIN=$(abspath $(BIN)) scripts/bench-scale $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache extension/node_modules extension/lib \
		workbench/labextension
