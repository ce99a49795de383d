# Sentral: `make run` serves a demo clinic on 127.0.0.1, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DB ?= demo/sentral.db
SIP_PORT ?= 5060

.PHONY: run test test-deps lint typecheck bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	@mkdir -p $(dir $(DEMO_DB))
	$(VENV)/bin/sentral --db $(DEMO_DB) init --demo
	$(VENV)/bin/sentral --db $(DEMO_DB) serve --listen udp:127.0.0.1:$(SIP_PORT) --listen tcp:127.0.0.1:$(SIP_PORT)

# What the system tests need beyond Python packages: SIPp and a running PostgreSQL.
test-deps: $(VENV)/.installed
	@bash .ci/deps

test: test-deps
	@bash .ci/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check sentral tests bench
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
