# The two commands of the README, and the tools around them. Everything else is `tripwire --help`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# faust pins croniter below 6 and click below 8.4, so faust gets a virtualenv of its own: the
# benchmark's baseline runs there, and so do the faust apps of the tests (tests/integration/test_faust_app.py).
FAUST_VENV := .venv-faust

.PHONY: demo test lint bench clean orchestrators

# What the demo needs: tripwire itself (`pip install -e .`).
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# What the tests, the linters and the benchmarks need on top: the dev extra.
$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

$(FAUST_VENV)/bin/python: pyproject.toml
	$(PYTHON) -m venv $(FAUST_VENV)
	$(FAUST_VENV)/bin/pip install --quiet --upgrade pip
	$(FAUST_VENV)/bin/pip install --quiet -e '.[faust]'
	touch $@

demo: $(VENV)/.runtime  ## start tripwire dev examples/, publish data_updated, show the run
	$(BIN)/python examples/demo.py

# The orchestrators the target tests start for real (Prefect, Airflow, Dagster) and Flyte's SDK,
# each in a virtualenv of its own, .venv-NAME (tests/fixtures/venvs.py): tripwire needs none.
orchestrators: $(VENV)/.dev
	$(BIN)/python -m tests.fixtures.venvs

test: $(VENV)/.dev $(FAUST_VENV)/bin/python orchestrators  ## the whole test suite (what CI runs, after `make lint`)
	$(BIN)/pytest -n 2 --dist loadfile --durations=15 -m "not nemesis"
	$(BIN)/pytest -m nemesis --durations=5  # alone: its broker on moto's S3 slows under load

lint: $(VENV)/.dev  ## ruff, mypy, and the layer contracts (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.dev $(FAUST_VENV)/bin/python
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/sensors.py --faust-python $(FAUST_VENV)/bin/python

clean:
	rm -rf $(VENV) $(FAUST_VENV) .venv-prefect .venv-airflow .venv-dagster .venv-flyte .tripwire .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
