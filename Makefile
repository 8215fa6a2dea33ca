# Cairn developer tasks. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help venv install up test lint bench clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python ## Create .venv and install Cairn
	$(BIN)/pip install -q -e .

up: install ## Install, start the services on the embedded backend and crawl examples/lake
	$(BIN)/cairn up

test: $(BIN)/python ## Install test dependencies (and Debian's chromium) and run the whole suite
	$(BIN)/pip install -q -e '.[test]'
	@# The browser tests fail (never skip) with a clear message if chromium could not be had.
	-bash tests/browser/install-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(BIN)/python ## Run ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install ## Run every benchmark (ingest and search on sqlite and mongo+es); write benchmarks/RESULTS.md
	$(BIN)/pip install -q -e '.[mongo]'
	$(BIN)/python -m benchmarks.run_all

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) .cairn test-output
