# Quick start: `make demo` (fake AWS, no account needed) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench-dns clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "discobridge needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per extra: reinstall only when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	@touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/discobridge demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-lint
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src

# On demand, not in CI: needs Debian's knot and dnsperf (apt-get install knot dnsperf).
bench-dns: $(VENV)/.installed-test
	$(BIN)/python bench/dns/run.py

clean:
	rm -rf $(VENV) .demo .pytest_cache
