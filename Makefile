# The two commands (README): `make run` and `make test`. Each sets up what it needs.
# Needs only Python 3.11 (or 3.12) and make.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# Synthetic defaults for `make run` on a fresh clone (used only when data/raw is empty).
CUSTOMERS ?= 20000
SEED ?= 42
DATE ?= latest

.PHONY: run test setup prepare data dev clean-data bench help browser

help:
	@echo "make run    - synthetic data if data/raw is empty, then the nightly job for the latest partition"
	@echo "make test   - the test suite (what CI runs)"
	@echo "make dev    - the Dagster UI and daemon (dagster dev) on http://127.0.0.1:3000"
	@echo "make bench  - the benchmark (SCALE=10000|100000|1000000)"

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# dbt's manifest, which dagster-dbt reads to build the asset graph.
prepare: setup
	$(BIN)/dbt parse --project-dir dbt --profiles-dir dbt --quiet
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

data: setup
	@if [ -z "$$(ls -A data/raw 2>/dev/null)" ]; then \
		echo "data/raw is empty: generating $(CUSTOMERS) synthetic customers (seed $(SEED))"; \
		$(BIN)/python -m dagster_project.synthetic --customers $(CUSTOMERS) --seed $(SEED) \
			--out data/raw --truth data/truth; \
	else echo "using the files already in data/raw"; fi

run: prepare data
	$(BIN)/python -m dagster_project.cli run --date $(DATE)

# The report test drives Debian's headless chromium. Install it when missing and we may
# (root with apt-get); otherwise the test says why it cannot run (and fails under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get install -y -q chromium >/dev/null 2>&1 || echo "note: chromium not installed"; }

test: prepare browser
	$(BIN)/python -m pytest

dev: prepare data
	$(BIN)/dagster dev -w workspace.yaml

bench: prepare
	$(BIN)/python scripts/bench.py --customers $(or $(SCALE),100000)

clean-data:
	rm -rf data/raw data/truth data/models data/exports data/reports data/warehouse.duckdb* data/warehouse.dbt_target $(DAGSTER_HOME)
