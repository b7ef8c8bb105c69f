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


# Installs only what requirements/*.lock pin, every file checked against its hash: first the
# installer and build backend (build.lock), then the project with --no-deps, built by that
# setuptools (docs/supply-chain.md). setuptools' note that this is an editable install is muted.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
PIP_LOCKED := $(PIP_INSTALL) --require-hashes --no-deps -r

$(STAMP): pyproject.toml requirements/build.lock requirements/test.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) requirements/build.lock
	$(PIP_LOCKED) requirements/test.lock
	PYTHONWARNINGS='ignore:Editable installation' $(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Regenerates the locks from pyproject.toml, keeping every pin that still fits;
# LOCK_FLAGS=--upgrade (or --upgrade-package NAME) moves them on.
LOCK_FLAGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command 'make lock' $(LOCK_FLAGS)

lock: $(STAMP)
	$(UV_COMPILE) requirements/build.in -o requirements/build.lock
	$(UV_COMPILE) pyproject.toml --extra test -c requirements/build.lock -o requirements/test.lock
	$(UV_COMPILE) pyproject.toml -c requirements/test.lock -o requirements/runtime.lock
	$(UV_COMPILE) pyproject.toml --extra test --extra docs -c requirements/test.lock -o requirements/docs.lock
	$(UV_COMPILE) pyproject.toml --extra test --extra bench -c requirements/build.lock -o requirements/bench.lock

kafka-start:
	deploy/kafka-local start

kafka-stop stop:
	deploy/kafka-local stop

# run-check first: a taken web port stops `make run` in a second, before the broker starts.
run: install run-check kafka-start
	@bash deploy/run-demo.sh "$(DEMO_COUNT)" "$(BIN)"

run-check:
	@bash deploy/run-demo.sh --check

test: install
	$(BIN)/python -m pytest -ra

# Property tests and decoder fuzzers with random seeds and 25x the examples (about 15 minutes).
fuzz: install
	CDRPIPE_FUZZ=1 $(BIN)/python -m pytest -ra -p no:cacheprovider \
		tests/unit/formats/test_fuzz_decoders.py tests/unit/numbers/test_msisdn.py tests/unit/keys/test_pseudonym.py \
		tests/unit/numbers/test_text.py tests/unit/formats/test_text_policy.py tests/unit/ingest/test_poison_records.py

# The edit-test loop: lint and the unit tests without the large generated proofs (under a minute).
check: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 tests/unit -m "not slow"

lint: install
	$(BIN)/ruff check pipeline tests benchmarks docs
	$(BIN)/ruff format --check pipeline tests benchmarks docs
	$(BIN)/mypy

# The configuration tables of docs/configuration.md, from the settings groups in pipeline/config/settings.py.
docs-config: install
	$(BIN)/python -m docs.config_table docs/configuration.md

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) requirements/bench.lock
	$(PIP_LOCKED) requirements/bench.lock
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) kafka-start
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m benchmarks.throughput

chart: install
	$(PIP_LOCKED) requirements/docs.lock
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
	rm -rf $(VENV) data .kafka-local .kafka-local-secure
