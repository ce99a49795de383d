# Sentral: `make run` serves a demo clinic on 127.0.0.1, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DB ?= demo/sentral.db
SIP_PORT ?= 5060
# Music on hold and prompts, built here (espeak-ng and sox) and never committed.
SOUNDS ?= sounds

.PHONY: run test test-deps lint typecheck bench clean sounds native

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,native]'
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

# The signalling hot path compiled with mypyc (tools/native.py), rebuilt when any source it may
# include changes. The manifest it writes last is the stamp; sentral/__init__.py falls back to
# the source, with a warning, when the compiled modules do not match it.
NATIVE := sentral/_native.json
NATIVE_SOURCES := $(wildcard sentral/pbx/*.py sentral/pbx/sip/*.py sentral/pbx/features/*.py sentral/routing/*.py sentral/media/*.py)

$(NATIVE): $(NATIVE_SOURCES) tools/native.py | $(VENV)/.installed
	$(PY) tools/native.py

native: $(NATIVE)

run: $(VENV)/.installed $(SOUNDS)/.built $(NATIVE)
	@mkdir -p $(dir $(DEMO_DB))
	$(VENV)/bin/sentral --db $(DEMO_DB) init --demo --server 127.0.0.1:$(SIP_PORT)
	$(VENV)/bin/sentral --db $(DEMO_DB) serve --listen udp:127.0.0.1:$(SIP_PORT) --listen tcp:127.0.0.1:$(SIP_PORT) --sounds $(SOUNDS)

# What the system tests need beyond Python packages: SIPp and a running PostgreSQL.
test-deps: $(VENV)/.installed
	@bash .ci/deps

# The hot path compiles while test-deps installs packages. The sounds need espeak-ng and sox,
# which test-deps installs; servers started by the tests find them through SENTRAL_SOUNDS.
test:
	@$(MAKE) --no-print-directory -j2 test-deps native
	@$(MAKE) --no-print-directory $(SOUNDS)/.built
	@SENTRAL_SOUNDS=$(abspath $(SOUNDS)) bash .ci/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check sentral tests bench
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) bench/run_all.py

clean:
	$(PYTHON) tools/native.py --clean
	rm -rf $(VENV) demo $(SOUNDS) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
