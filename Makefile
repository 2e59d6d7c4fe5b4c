# Quick start: `make demo` runs gcsdvc end to end on a local emulator; `make test` runs the suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test test-bare lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python -m gcsdvc.demo

test: $(BIN)/.installed lint
	$(BIN)/python -m pytest --cov --cov-report=term

# The suite against fake-gcs-server itself, without the layer that answers as Cloud Storage does.
test-bare: $(BIN)/.installed
	GCSDVC_TEST_BARE_EMULATOR=1 $(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check gcsdvc tests benchmarks
	$(BIN)/ruff format --check gcsdvc tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_sync.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
