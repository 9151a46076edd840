# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint fmt clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "digestd needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/digestd demo

# Tests run in parallel (pytest-xdist; `auto` is one worker more than the cores, as tests
# spend much of their time waiting, see tests/conftest.py; an idle worker takes queued tests
# from a busy one, as the slow ones are few and long; PYTEST_WORKERS=0 runs them in this one
# process). PYTEST_ARGS adds anything else, e.g. PYTEST_ARGS='-m "not slow"' (the quick check).
PYTEST_WORKERS ?= auto
# pytest keeps the test modules it rewrote, and Python digestd's compiled modules, in
# __pycache__ (git-ignored) for the next run, even where PYTHONDONTWRITEBYTECODE is set (as on
# our CI machine): without them every pytest worker and every digestd process started by a
# test compiled everything again (collecting took 6.6 s of CPU a worker instead of 3.0 s).
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) outbox digestd-demo.db* .pytest_cache .mypy_cache
