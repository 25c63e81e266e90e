# posebench: `make run` trains and tests SVMAC on the embedded data, `make benchmark` runs the whole suite
# (configs/suite.yaml), `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CPU-sized settings for `make run` (the paper's settings stay in configs/svmac.yaml).
RUN_ARGS ?= --config configs/svmac.yaml --config configs/cpu_quick.yaml
# `make benchmark SUITE=... SUITE_ARGS='--only svmac@ -- --trainer.max_epochs 5'`
SUITE ?= configs/suite.yaml
SUITE_ARGS ?=

.PHONY: install run benchmark test leaderboard bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m benchmark fit $(RUN_ARGS)
	$(PY) -m benchmark leaderboard

benchmark: $(STAMP)
	$(PY) -m benchmark suite $(SUITE) $(SUITE_ARGS)

test: $(STAMP)
	$(PY) -m pytest

leaderboard: $(STAMP)
	$(PY) -m benchmark leaderboard

bench: $(STAMP)
	$(PY) -m benchmark.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf results runs LEADERBOARD.md leaderboard.csv leaderboard.html
