# Quick start: `make demo` runs gcsdvc end to end on a local emulator, in a new temporary folder
# (never inside this checkout); `make emulator` keeps a seeded one running; `make test` runs the suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo emulator test test-fast test-bare lint bench bench-scale bench-listing bench-api bench-archive bench-quick test-floor clean
# pytest-xdist workers, each with its own emulator. On 2 cores, 2 workers take 40 s where one
# takes 60; 3 or 4 were no faster (each worker pays a few CPU seconds to start and collect).
# `make test TEST_JOBS=0` runs serially, `TEST_JOBS=auto` one worker per core.
TEST_JOBS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_JOBS)
FLOOR_VENV ?= .venv-floor
FLOOR_BIN := $(FLOOR_VENV)/bin

# Dev tools come pinned from constraints/dev.txt: CI changes only when we change it.
$(BIN)/.installed: pyproject.toml constraints/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints/dev.txt -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m gcsdvc.demo

emulator: $(BIN)/.installed
	$(BIN)/python -m gcsdvc.emulator

test: $(BIN)/.installed lint
	$(PYTEST) --cov --cov-report=term

# The inner loop: every test that needs no emulator (pure logic, manifests, stage text, git).
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not e2e" -q

# The suite against fake-gcs-server itself, without the layer that answers as Cloud Storage does.
test-bare: $(BIN)/.installed
	GCSDVC_TEST_BARE_EMULATOR=1 $(PYTEST)

lint: $(BIN)/.installed
	$(BIN)/ruff check gcsdvc tests benchmarks
	$(BIN)/ruff format --check gcsdvc tests benchmarks
	$(BIN)/mypy

# The suite against the lowest versions pyproject.toml declares (constraints/floor.txt).
# Only the test runner (pytest, pytest-xdist, hypothesis, jsonschema) is added: the pinned mypy needs a
# newer pathspec than dvc 3.54 can use.
$(FLOOR_BIN)/.installed: pyproject.toml constraints/dev.txt constraints/floor.txt
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_BIN)/python -m pip install --quiet -c constraints/dev.txt -c constraints/floor.txt \
		-e '.[demo]' pytest pytest-xdist hypothesis jsonschema
	touch $@

test-floor: $(FLOOR_BIN)/.installed
	$(FLOOR_BIN)/python -m pytest -n $(TEST_JOBS) -p no:cacheprovider

# Benchmarks print a table of medians against baselines measured in the same run.
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_sync.py

bench-scale: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_scale.py

bench-listing: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_listing.py

bench-api: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_api.py

bench-archive: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_archive.py

# CI's smoke test: small counts, one run, no targets; fails only when a benchmark breaks.
bench-quick: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_sync.py --quick
	$(BIN)/python benchmarks/bench_scale.py --quick
	$(BIN)/python benchmarks/bench_listing.py --quick
	$(BIN)/python benchmarks/bench_api.py --quick
	$(BIN)/python benchmarks/bench_archive.py --quick

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .pytest_cache .mypy_cache .ruff_cache
