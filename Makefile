# The two commands a newcomer needs: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := uv==0.13.9
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: run test dev setup lint lock bench clean

# The environment, rebuilt when the pins change. uv installs the pinned set in seconds;
# constraints.txt pins every package (see README: the dagster-postgres resolver trap).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(UV)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	@mkdir -p "$(DAGSTER_HOME)"

# 1. Build the demo data and reconcile every demo customer through Dagster.
run: setup
	$(BIN)/reconcile demo
	$(BIN)/reconcile scan

# 2. Lint and run the whole test suite (PostgreSQL at 127.0.0.1:5432 or $$RECONCILIATION_TEST_PG_URL).
test: setup
	$(BIN)/ruff check reconciliation reconciliation_tests benchmarks
	$(BIN)/ruff format --check reconciliation reconciliation_tests benchmarks
	$(BIN)/pytest -q -m timing
	$(BIN)/pytest -q -n 2 -m "not timing"

# The Dagster UI on the same embedded default: http://127.0.0.1:3000
dev: setup
	$(BIN)/reconcile demo
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

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
