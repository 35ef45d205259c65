# Two commands for a fresh machine with Python 3.11+:  make run  /  make test
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN_STAMP := $(VENV)/.installed-run-stamp
DATA_DIR ?= ./data
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install tools run test lint openapi-snapshot errors-doc clean

# Two stamps: `make run` installs only what serving needs (a fresh machine serves sooner);
# `make test` and the other targets install the test and lint extras too.
$(RUN_STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Agnes needs Python 3.11 or newer on PATH (python3.11, python3.12 …)."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'  # lint: hadolint, compose, schema checks (tests use them)
	@touch $(STAMP)

install: $(STAMP)

# Test tools from npm, project-local (never global): azurite (Azure Blob) for the keboola connector tests.
# Without npm: CI fails here; a dev machine gets a note and the Azure tests skip with that reason.
AZURITE := .tools/node_modules/.bin/azurite-blob
tools:
	@if [ -x $(AZURITE) ]; then :; \
	elif command -v npm >/dev/null 2>&1; then npm install --prefix .tools --no-audit --no-fund --silent azurite@3; \
	elif [ -n "$$CI" ]; then echo "npm is missing: install nodejs + npm (the Azure Blob tests need azurite)"; exit 1; \
	else echo "note: npm is missing, so the Azure Blob tests will be skipped (install nodejs + npm)"; fi

run: $(RUN_STAMP)
	DATA_DIR=$(DATA_DIR) $(BIN)/agnes serve --host $(HOST) --port $(PORT)

test: install tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src connectors contract_tests tests examples scripts bench

# Regenerate the committed OpenAPI snapshot after an intended API change.
openapi-snapshot: install
	$(BIN)/python -m agnes.api.openapi_snapshot --write

# Regenerate docs/errors.md after changing agnes.errors.CATALOG (a test fails while it is stale).
errors-doc: install
	$(BIN)/python -m agnes.errors_doc --write

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
