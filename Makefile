# Sentral: `make run` serves a demo clinic on 127.0.0.1, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DB ?= demo/sentral.db
SIP_PORT ?= 5060
# Music on hold and prompts, built here (espeak-ng and sox) and never committed.
SOUNDS ?= sounds

.PHONY: run test test-deps lint typecheck bench clean sounds

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Rebuilt when the code that makes them changes; the stamp is written last, so an interrupted
# build is redone. espeak-ng and sox are installed first where they are missing.
$(SOUNDS)/.built: sentral/media/sounds.py | $(VENV)/.installed
	@command -v espeak-ng >/dev/null 2>&1 && command -v sox >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng sox >/dev/null; }
	$(PY) -m sentral.media.sounds build $(SOUNDS)
	touch $@

sounds: $(SOUNDS)/.built

run: $(VENV)/.installed $(SOUNDS)/.built
	@mkdir -p $(dir $(DEMO_DB))
	$(VENV)/bin/sentral --db $(DEMO_DB) init --demo
	$(VENV)/bin/sentral --db $(DEMO_DB) serve --listen udp:127.0.0.1:$(SIP_PORT) --listen tcp:127.0.0.1:$(SIP_PORT) --sounds $(SOUNDS)

# What the system tests need beyond Python packages: SIPp and a running PostgreSQL.
test-deps: $(VENV)/.installed
	@bash .ci/deps

# The sounds need espeak-ng and sox, which test-deps installs; servers started by the tests find
# them through SENTRAL_SOUNDS.
test: test-deps
	@$(MAKE) --no-print-directory $(SOUNDS)/.built
	@SENTRAL_SOUNDS=$(abspath $(SOUNDS)) bash .ci/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check sentral tests bench
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) demo $(SOUNDS) .pytest_cache .mypy_cache .ruff_cache .hypothesis
