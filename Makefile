# Cairn developer tasks. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv

.DEFAULT_GOAL := help
.PHONY: help venv install up test compose-test lint lock bench clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade 'pip>=24'

# What gets installed is the lock (requirements/*.txt, exported from uv.lock, every file
# hash-checked); pyproject.toml keeps compatible ranges for `pip install cairn-catalogue`.
# The stamps make a second `make up` or `make test` reinstall only when the lock changed.
$(VENV)/.installed-%: requirements/%.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r $<
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

install: $(VENV)/.installed-run ## Create .venv and install Cairn from the lock

up: install ## Install, start the services on the embedded backend and crawl examples/lake
	$(BIN)/cairn up

test: $(VENV)/.installed-test ## Install test dependencies (and Debian's chromium) and run the whole suite
	@# The browser tests fail (never skip) with a clear message if chromium could not be had.
	-bash tests/browser/install-chromium.sh
	@# Test servers are built or downloaded here, not inside a test's timeout (first run only).
	-$(BIN)/python -m tests.servers.prepare
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Part of `make test` too. Needs root: installs docker.io and debootstrap when missing, runs
# dockerd, builds local base images (cached in ~/.cache/cairn/docker) and the Cairn image.
compose-test: $(VENV)/.installed-test ## Build the image and run docker-compose.yml for real (docker compose up, crawl, UI search, down)
	$(BIN)/python -m pytest tests/test_compose_stack.py

lint: $(VENV)/.installed-test ## Run ruff (lint and format) and mypy on the source
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# After editing pyproject's dependencies: `make lock` (keeps every other pin);
# to take newer releases within the ranges: `make lock LOCK_ARGS=--upgrade`.
lock: | $(BIN)/python ## Resolve uv.lock from pyproject.toml and export requirements/*.txt
	$(BIN)/pip install -q uv
	$(UV) lock $(LOCK_ARGS)
	$(UV) export --frozen --quiet --no-emit-project --format requirements-txt \
		--extra pandas -o requirements/run.txt
	$(UV) export --frozen --quiet --no-emit-project --format requirements-txt \
		--extra mongo --extra hdfs --extra adls --extra s3 --extra kafka --extra metastore \
		-o requirements/docker.txt
	$(UV) export --frozen --quiet --no-emit-project --format requirements-txt \
		--extra test -o requirements/test.txt
	$(UV) export --frozen --quiet --no-emit-project --format requirements-txt \
		--extra test --extra bench -o requirements/bench.txt

bench: $(VENV)/.installed-bench ## Run every benchmark (ingest and search on sqlite and mongo+es); write benchmarks/RESULTS.md
	$(BIN)/python -m benchmarks.run_all

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) .cairn test-output
