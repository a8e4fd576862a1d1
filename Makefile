# The README's two commands, `make demo` and `make test`, work on a fresh clone with only Python and pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest slow sync-client cli-docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/d1sync demo

# Lint, type checks and the whole suite but the long storms (marked slow; CI runs them too: .ci/run).
test: $(VENV)/.installed-dev lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts
	$(BIN)/python scripts/generate_sync_client.py --check
	$(BIN)/python scripts/generate_cli_docs.py --check

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

slow: $(VENV)/.installed-dev
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# The blocking client is generated from the asyncio one; `make lint` fails when they drift apart.
sync-client: $(VENV)/.installed-dev
	$(BIN)/python scripts/generate_sync_client.py

# docs/cli.md is written from the commands themselves; `make lint` fails when it is stale.
cli-docs: $(VENV)/.installed-dev
	$(BIN)/python scripts/generate_cli_docs.py

bench: $(VENV)/.installed
	$(BIN)/d1sync bench --quick

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache build dist
