# The two commands a newcomer needs: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := uv==0.13.9
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# The browser of the UI tests and screenshots (playwright drives it; it never downloads one).
export RECONCILIATION_CHROMIUM ?= /usr/bin/chromium

.PHONY: run test dev setup browser screenshots lint lock bench clean

# The environment, rebuilt when the pins change. uv installs the pinned set in seconds;
# constraints.txt pins every package (see README: the dagster-postgres resolver trap).
# Bytecode is compiled at install: every run worker, code server and test process imports
# dagster and Great Expectations afresh, and where PYTHONDONTWRITEBYTECODE is set (or the
# venv is read-only) nothing would be cached: measured here, import great_expectations
# 15 s without .pyc files, 5 s with them; import dagster 2-3 s against 1 s.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(UV)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

# Our own modules' bytecode too (only files changed since the last setup are compiled).
setup: $(VENV)/.installed
	@mkdir -p "$(DAGSTER_HOME)"
	@$(BIN)/python -m compileall -q reconciliation reconciliation_tests benchmarks >/dev/null

# Debian's Chromium for the UI tests and `make screenshots`, installed when missing.
browser:
	@test -x "$(RECONCILIATION_CHROMIUM)" || { \
	  if [ "$(RECONCILIATION_CHROMIUM)" = /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Chromium (apt-get install chromium) for the UI tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make: no Chromium at $(RECONCILIATION_CHROMIUM) for the UI tests and screenshots;"; \
	    echo "  make installs Debian's at /usr/bin/chromium only as root with apt-get:"; \
	    echo "  run 'sudo apt-get install -y chromium', or set RECONCILIATION_CHROMIUM to a Chromium or Chrome binary"; \
	    exit 1; \
	  fi; }
	@test -x "$(RECONCILIATION_CHROMIUM)" || { echo "make: apt-get installed no $(RECONCILIATION_CHROMIUM)"; exit 1; }

# 1. Build the demo data and reconcile every demo customer through Dagster.
run: setup
	$(BIN)/reconcile demo
	$(BIN)/reconcile scan

# 2. Lint and run the whole test suite (PostgreSQL at 127.0.0.1:5432 or $$RECONCILIATION_TEST_PG_URL).
# --dist loadfile: a file's tests run on one worker, so its module-scoped servers and demo
# data are built once (the UI tests' webserver and scan, for one). pytest-xdist's
# xdist_group marks have no effect under pytest 9.2 (nodeid suffix ignored).
# Three workers on two cores: the slow tests spend much of their time waiting on processes
# they started (code servers, run workers, the webserver, Chromium), and a third worker fills
# that time: measured from a fresh clone, 3 min 28 s against 3 min 57 s with two.
test: setup browser
	$(BIN)/ruff check reconciliation reconciliation_tests benchmarks
	$(BIN)/ruff format --check reconciliation reconciliation_tests benchmarks
	$(BIN)/pytest -q -m timing
	$(BIN)/pytest -q -n 3 --dist loadfile -m "not timing"

# The Dagster UI on the same embedded default: http://127.0.0.1:3000
dev: setup
	$(BIN)/reconcile demo
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The README's pictures of the UI (docs/images/*.png): the demo scanned on a throwaway
# instance, served by dagster-webserver, photographed by headless Chromium.
screenshots: setup browser
	$(BIN)/python -m reconciliation.screenshots

lint: setup
	$(BIN)/ruff check reconciliation reconciliation_tests benchmarks
	$(BIN)/ruff format --check reconciliation reconciliation_tests benchmarks

# Re-resolve the pinned set after changing pyproject.toml dependencies.
lock:
	$(PYTHON) -m venv /tmp/reconciliation-lock && /tmp/reconciliation-lock/bin/pip install -q "$(UV)"
	/tmp/reconciliation-lock/bin/uv pip compile pyproject.toml --extra dev -q -o constraints.txt

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo reports storage .dagster_home
