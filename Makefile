# Lvyue: `make run` sets up and starts the app; `make test` sets up and runs every test (SQLite, then PostgreSQL).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres

.PHONY: setup run worker test test-sqlite test-postgres lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The BPMN viewer (bpmn-js) comes from the npm registry, pinned in webapp/assets/package-lock.json; needs Node.js/npm.
VENDOR_STAMP = webapp/static/vendor/.built
$(VENDOR_STAMP): webapp/assets/package.json webapp/assets/package-lock.json scripts/build-assets.sh
	bash scripts/build-assets.sh
	touch $@

setup: $(BIN)/.installed $(VENDOR_STAMP)

run: setup
	bash scripts/ensure-fonts.sh
	$(BIN)/lvyue init-db --demo-contracts
	$(BIN)/lvyue run

worker: setup
	$(BIN)/lvyue worker

# Months of history for the dashboards: 200 more contracts driven through the real process into the database `make
# run` uses (LVYUE_DATABASE_URL, else instance/lvyue.db), beside whatever it holds; `lvyue demo --help` for the options.
.PHONY: demo-data
demo-data: $(BIN)/.installed
	$(BIN)/lvyue init-db
	$(BIN)/lvyue demo --contracts 200

lint: setup
	$(BIN)/ruff check .

test: lint test-sqlite test-postgres

test-sqlite: setup
	bash scripts/ensure-browser.sh
	$(BIN)/pytest -q

test-postgres: setup
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-browser.sh
	LVYUE_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q

bench: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/engine_bench.py

# Queue, contract, task and API pages on 100,000 contracts / 1,000,000 task rows (SQLite and PostgreSQL);
# `--quick` for 10,000.
.PHONY: bench-web
bench-web: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/web_bench.py

# Every benchmark of the performance issue in one run (engine, web at 100,000 contracts, timers, HTTP load test
# under gunicorn); `.venv/bin/python bench/run_all.py --quick` for the CI sizes.
.PHONY: bench-all
bench-all: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/run_all.py

# The audit record at volume: fill 1,000,000 chained events, verify_all, period CSV, audit.record cost, tamper
# detection (SQLite and PostgreSQL); `--quick` for 50,000.
.PHONY: bench-audit
bench-audit: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/audit_bench.py

# SIGKILL web and timer workers 100 times mid-transaction on PostgreSQL, then prove every instance whole
# (about 8 minutes); CI runs 24 kills on PostgreSQL and 12 on SQLite in tests/test_crash.py.
.PHONY: crash
crash: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/crash_harness.py --kills 100

# Known vulnerabilities in the installed packages (pip-audit): fails on any; says how many packages it could
# really check. LVYUE_AUDIT_STRICT=1 also fails when the vulnerability service had no data for some.
.PHONY: audit
audit: setup
	$(BIN)/python scripts/audit_dependencies.py $(if $(filter 1,$(LVYUE_AUDIT_STRICT)),--strict)

clean:
	rm -rf $(VENV) instance .pytest_cache webapp/static/vendor webapp/assets/node_modules

# Translations are read from webapp/translations/zh_CN/LC_MESSAGES/messages.po when the app starts (no compile
# step): `make messages` re-extracts the msgids and merges them into the .po; then fill in the new msgstr.
.PHONY: messages
messages: setup
	$(BIN)/pybabel extract -F babel.cfg -k N_ --project=Lvyue -o webapp/translations/messages.pot .
	$(BIN)/pybabel update -i webapp/translations/messages.pot -d webapp/translations -l zh_CN --no-fuzzy-matching

# What withdraw, return-to-step and the task page's power-tool panels cost (SQLite and PostgreSQL); `--quick`: fewer
.PHONY: bench-power
bench-power: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/power_tools_bench.py

# What a process owner waits for in the studio: check, diff, replay against history, deploy, migration dry run
.PHONY: bench-studio
bench-studio: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/studio_bench.py

# What a manager waits for: the dashboard, the overdue list and a contract's records over demo contracts
.PHONY: bench-dashboard
bench-dashboard: setup
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/dashboard_bench.py
