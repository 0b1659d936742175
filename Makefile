# The two commands of the README. Everything else is `tripwire --help`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/tripwire: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/tripwire  ## start tripwire dev examples/, publish data_updated, show the run
	$(BIN)/python examples/demo.py

test: $(BIN)/tripwire  ## the whole test suite (what CI runs)
	$(BIN)/pytest -n 2 --dist loadfile --durations=15

lint: $(BIN)/tripwire
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/tripwire
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/sensors.py

clean:
	rm -rf $(VENV) .tripwire .pytest_cache .mypy_cache .ruff_cache
