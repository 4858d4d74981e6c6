# The two commands of the README:
#   make demo   - set up a virtualenv, install pyfi, run the main job on the embedded default
#   make test   - set up a virtualenv, install pyfi with its dev tools, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format mypy bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" sh examples/first-flow.sh

# Two pytest processes, each with its own Redis server (tests/private_redis.py):
# the tests mostly wait on subprocesses and services, so two overlap well on a
# two-core host; a bigger host may raise TEST_WORKERS. worksteal keeps both busy
# to the end of the run, whatever the spread of test durations.
TEST_WORKERS ?= 2

test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25

lint: install
	$(BIN)/ruff check pyfi tests migrations examples bench
	$(BIN)/ruff format --check pyfi tests migrations examples bench

format: install
	$(BIN)/ruff format pyfi tests migrations examples bench
	$(BIN)/ruff check --fix pyfi tests migrations examples bench

mypy: install
	$(BIN)/mypy

# pyfi against Celery, Dramatiq and the raw broker (docs/benchmarks.md); needs
# the local RabbitMQ, Redis and PostgreSQL. BENCH_ARGS="--scale 0.1" shrinks it.
BENCH_VENV ?= .bench-venv
$(BENCH_VENV)/.installed: pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . -r bench/requirements.txt
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m bench.run $(BENCH_ARGS)

# Faults and hostile input against a deployed network (docs/reliability.md); needs
# the local RabbitMQ, Redis and PostgreSQL. CHAOS_ARGS="--size full" for the full run.
# Processor virtualenvs are kept in .chaos-venvs between runs (the first build is slow).
CHAOS_ARGS ?= --size small
chaos: install
	$(BIN)/python -m bench.chaos --venv-cache .chaos-venvs $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .chaos-venvs .demo .pytest_cache .ruff_cache .mypy_cache *.egg-info
