# The two commands of the README. Both do all set-up on a fresh machine.
VENV ?= .venv
OUT ?= lamina-out
PY_SOURCES = src tests benchmarks

.PHONY: run test setup lint

run: setup
	$(VENV)/bin/lamina run --out $(OUT)

test: setup
	scripts/setup-browser.sh
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/python -m pytest

setup:
	scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check --fix $(PY_SOURCES)
	$(VENV)/bin/ruff format $(PY_SOURCES)
