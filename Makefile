# agent-server — the two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.installed-bench
# The server under benchmark runs from its own venv with the runtime dependencies
# only, as deployed: the dev tools in $(VENV) would add modules it then imports.
SERVER_VENV  := .venv-server
SERVER_STAMP := $(SERVER_VENV)/.installed

.PHONY: install run test lint format studio bench bench-quick clean

# Re-install only when the project's dependency list changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

$(SERVER_STAMP): pyproject.toml
	test -x $(SERVER_VENV)/bin/python || $(PYTHON) -m venv $(SERVER_VENV)
	$(SERVER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVER_VENV)/bin/python -m pip install --quiet -e .
	touch $(SERVER_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/agent-server serve

# The JS SDK acceptance tests (tests/js, run by tests/agent_protocol/test_js_client.py):
# `npm ci` again only when the lockfile changes.
JS_DIR   := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

# The suite includes a --quick smoke run of the benchmarks, hence the bench extra.
test: $(BENCH_STAMP) $(JS_STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests graphs bench
	$(BIN)/ruff format --check src tests graphs bench

format: $(STAMP)
	$(BIN)/ruff format src tests graphs bench
	$(BIN)/ruff check --fix src tests graphs bench

# Benchmarks (bench/): results in bench/results/, a chart and a markdown table.
# Uses the machine's Redis (127.0.0.1:6379) and PostgreSQL when present.
bench: $(BENCH_STAMP) $(SERVER_STAMP)
	BENCH_SERVER_PYTHON=$(abspath $(SERVER_VENV))/bin/python $(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

# LangGraph Studio's local server, fully offline.
studio: $(STAMP)
	LANGSMITH_TRACING=false LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true \
		$(BIN)/langgraph dev --no-browser --config langgraph.json

clean:
	rm -rf $(VENV) $(SERVER_VENV) .pytest_cache .ruff_cache $(JS_DIR)/node_modules
