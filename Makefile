# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint typecheck docs unit install clean bench soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Each stamp is rebuilt when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[aer]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed-run
	$(BIN)/python -m oqc_style_sdk.demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# coverage starts before pytest, so modules pytest's plugins import early are measured too.
unit: $(VENV)/.installed-dev
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

# The docs site (mkdocs.yml): a broken link, a page missing from the nav ... fails the build.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs unit

# Benchmarks (never part of `make test`; see docs/performance.md). The published peers go into
# their own environment; each emulator and each measured client runs in its own process.
PEERS := benchmarks/.venv-peers
$(PEERS)/.installed: benchmarks/requirements-peers.txt
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip --disable-pip-version-check install --quiet -r benchmarks/requirements-peers.txt
	@touch $@

bench: $(VENV)/.installed-run $(PEERS)/.installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage build dist *.egg-info

# Reliability under random faults (docs/reliability.md): ~3000 jobs over every HTTP backend's
# emulator; writes benchmarks/soak.json; fails if a target is missed. Not part of `make test`.
soak: $(VENV)/.installed-run
	timeout 600 $(BIN)/python benchmarks/soak.py
