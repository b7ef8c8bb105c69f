# Two commands do all the set-up on a fresh machine:
#   make run    local Kafka + keyring + worker + sample traffic; Parquet lands under ./data/store
#   make test   the whole test suite (it starts its own local Kafka)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_COUNT ?= 20000

export CDRPIPE_STORE ?= ./data/store
export CDRPIPE_KEYRING ?= ./secrets/keyring.json
export CDRPIPE_STATE_DIR ?= ./data/state

.PHONY: install run test check fuzz lint docs-config chart bench bench-stages bench-soak bench-pseudonym bench-lifecycle bench-year bench-classify kafka-start kafka-stop stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

kafka-start:
	deploy/kafka-local start

kafka-stop stop:
	deploy/kafka-local stop

run: install kafka-start
	@bash deploy/run-demo.sh "$(DEMO_COUNT)"

test: install
	$(BIN)/python -m pytest -ra

# Property tests and decoder fuzzers with random seeds and 25x the examples (about 15 minutes).
fuzz: install
	CDRPIPE_FUZZ=1 $(BIN)/python -m pytest -ra -p no:cacheprovider \
		tests/unit/formats/test_fuzz_decoders.py tests/unit/numbers/test_msisdn.py tests/unit/keys/test_pseudonym.py \
		tests/unit/numbers/test_text.py tests/unit/formats/test_text_policy.py tests/unit/ingest/test_poison_records.py

# The edit-test loop: lint and the unit tests without the large generated proofs (under a minute).
check: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit -m "not slow"

lint: install
	$(BIN)/ruff check pipeline tests benchmarks docs
	$(BIN)/ruff format --check pipeline tests benchmarks docs
	$(BIN)/mypy

# The README's configuration tables, from the settings groups in pipeline/config/settings.py.
docs-config: install
	$(BIN)/python -m docs.config_table README.md

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) kafka-start
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.throughput

chart: install
	$(BIN)/pip install --quiet -e '.[test,docs]'
	$(BIN)/python docs/make_chart.py ./data/store docs/calls-per-queue.png

bench-stages: install
	$(BIN)/python -m benchmarks.stages

bench-soak: $(BENCH_STAMP) kafka-start
	$(BIN)/python -m benchmarks.soak

bench-pseudonym: install
	$(BIN)/python -m benchmarks.pseudonym_hot_path

bench-lifecycle: install
	$(BIN)/python -m benchmarks.lifecycle_store

# A year of the trickle's small files at 1/BENCH_YEAR_SCALE (default 100) of the files, cached
# under data/bench-year: subject requests, retention, DuckDB and Polars (see benchmarks/year.md).
bench-year: install
	$(BIN)/python -m benchmarks.year

# Classification stages in µs per record, then the differential run at 10,000,000 inputs
# (BENCH_CLASSIFY_INPUTS) on both cores: several minutes.
bench-classify: install
	$(BIN)/python -m benchmarks.classify

clean:
	rm -rf $(VENV) data .kafka-local
