# The two commands of the quick start. Both set up .venv from nothing (Python 3.11+ is all they need).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

run: $(VENV)/.run          ## set up and run the embedded default (config/hub.yaml): no broker needed
	$(BIN)/hub run config/hub.yaml

test: $(VENV)/.test        ## set up and run the whole test suite (it starts the brokers it needs)
	$(BIN)/pytest

lint: $(VENV)/.test
	$(BIN)/ruff check hub connectors functions tests bench
	$(BIN)/ruff format --check hub connectors functions tests bench
	$(BIN)/mypy

bench: $(VENV)/.test
	$(BIN)/python bench/files_bench.py
	$(BIN)/python bench/schedule_bench.py
	$(BIN)/python bench/filter_bench.py
	$(BIN)/python bench/runtime_bench.py
	$(BIN)/python bench/redis_bench.py
	$(BIN)/python bench/mqtt_bench.py
	$(BIN)/python bench/nats_bench.py
	$(BIN)/python bench/postgres_bench.py
	$(BIN)/python bench/kafka_bench.py
	$(BIN)/python bench/kinesis_bench.py
	$(BIN)/python bench/sqs_bench.py
	$(BIN)/python bench/http_bench.py
	$(BIN)/python bench/cluster_bench.py
	$(BIN)/python bench/store_bench.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $@ $(VENV)/.run

clean:
	rm -rf $(VENV) .hub .pytest_cache .mypy_cache .ruff_cache
