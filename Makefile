# The README's two commands, `make demo` and `make test`, work on a fresh clone with only Python and pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest slow sync-client cli-docs bench clean node-tools conformance-fixtures

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
# Where node is present, the D1 engine and wrangler come first, so the conformance and wrangler tests run too.
test: $(VENV)/.installed-dev node-tools lint typecheck pytest

# workerd's D1 engine (Miniflare) and wrangler, pinned in tests/conformance/package.json, from the npm registry.
# Without node (or npm) this does nothing and those tests skip; a failed install also leaves them skipped.
NODE_DIR := $(VENV)/node
node-tools: | $(BIN)/python
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		if ! cmp -s tests/conformance/package.json $(NODE_DIR)/package.json || [ ! -d $(NODE_DIR)/node_modules ]; then \
			mkdir -p $(NODE_DIR) && cp tests/conformance/package.json $(NODE_DIR)/package.json && \
			(cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error) || \
			echo "node-tools: npm install failed; the engine and wrangler tests will skip" >&2; \
		fi; \
	else echo "node-tools: no node/npm here; the engine and wrangler tests will skip"; fi

# Record the engine's answers to every conformance case again (after adding cases or moving the pin).
conformance-fixtures: $(VENV)/.installed-dev node-tools
	$(BIN)/python -m tests.conformance.record

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts
	$(BIN)/python scripts/generate_sync_client.py --check
	$(BIN)/python scripts/generate_cli_docs.py --check

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# One worker per core, at most 4 (most tests wait on sockets and subprocesses); worksteal evens out the long ones.
XDIST ?= -n auto --maxprocesses=4 --dist worksteal
pytest: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

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
