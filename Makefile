# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export DEBUG ?= true

.PHONY: run test test-fast lint sysdeps venv devdeps browser promtool migrate bench bench-quick soak clean screenshots audit

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# mysqlclient compiles against the MariaDB/MySQL client headers.
sysdeps:
	@if ! pkg-config --exists mariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing pkg-config and libmariadb-dev (needed to build mysqlclient)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pkg-config libmariadb-dev >/dev/null; \
	  else \
	    echo "mysqlclient needs pkg-config and the MariaDB/MySQL client headers. Install them, e.g.:"; \
	    echo "  Debian/Ubuntu: sudo apt-get install pkg-config libmariadb-dev"; \
	    echo "  macOS:         brew install pkg-config mysql-client"; \
	    exit 1; \
	  fi; \
	fi

$(VENV)/.deps: requirements.txt | $(PY)
	$(MAKE) --no-print-directory sysdeps
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.devdeps: requirements-dev.txt requirements.txt $(VENV)/.deps
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.deps
devdeps: $(VENV)/.devdeps

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "The browser tests need Chromium: sudo apt-get install chromium"; exit 1; \
	  fi; \
	fi

# The alert rules (deploy/prometheus/) are checked with promtool, from Debian's prometheus package.
promtool:
	@if ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing promtool (prometheus) for the alert-rule tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "The alert-rule tests need promtool: sudo apt-get install prometheus"; exit 1; \
	  fi; \
	fi

migrate: venv
	$(PY) manage.py migrate --noinput

run: venv migrate
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py showconfig
	@# Ctrl-C stops web, worker and scheduler; the embedded Redis (only used without REDIS_URL) goes too.
	@# scheduler_site/welcome.py prints the URL to open and the next steps once the site is up.
	@bash -c '$(PY) -m scheduler_site.welcome $(PORT) & welcome=$$!; \
	  trap "kill $$welcome 2>/dev/null; [ -n \"$$REDIS_URL\" ] || $(PY) -m scheduler_site.embedded_redis stop" EXIT; \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile -p $(PORT)'

test: devdeps browser promtool
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: devdeps promtool
	$(PY) -m pytest -m "not e2e and not browser and not faults" $(PYTEST_ARGS)

lint: devdeps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# mypy's Django plugin loads the settings: a REDIS_URL (never connected to) keeps them from
	@# starting the embedded redis-server and leaving it running.
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} $(VENV)/bin/mypy .

clean:
	rm -rf var staticfiles

# Benchmarks (not part of `make test`): the real web server (scripts/web), rqworker and rqscheduler against
# MariaDB and Redis, load from wrk. They use their own database and Redis index (BENCH_DATABASE_URL,
# BENCH_REDIS_URL; see bench/__main__.py) and flush that index. `bench` writes bench/results/<date>.json and docs/BENCHMARKS.md.
.PHONY: wrk
wrk:
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing wrk for the benchmarks"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "The benchmarks need wrk: sudo apt-get install wrk"; exit 1; \
	  fi; \
	fi

bench: devdeps wrk
	$(PY) -m bench --profile full

bench-quick: devdeps wrk
	$(PY) -m bench --profile quick

# Soak and the slow fault drill (not part of `make test`): 50 simulated users for SOAK_SECONDS (default
# 600) against 2 workers with the invariants checked continuously, then fault scenario 4 with
# FAULT_BULK_ORDERS (default 5000) orders due in the same second. Same DATABASE_URL / REDIS_URL as
# `make test` (MariaDB + Redis); each test starts its own private redis-server. Short run: SOAK_SECONDS=60 make soak
soak: devdeps
	SOAK_SECONDS=$${SOAK_SECONDS:-600} FAULT_BULK_ORDERS=$${FAULT_BULK_ORDERS:-5000} $(PY) -m pytest -q -p no:randomly \
	  tests/faults/soak.py \
	  tests/faults/test_scheduler.py::test_three_schedulers_and_many_orders_due_in_the_same_second_run_each_once \
	  $(PYTEST_ARGS)

# Refresh the README's screenshots (docs/screenshots/) from the browser suite.
screenshots: devdeps browser
	UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q -p no:randomly tests/browser $(PYTEST_ARGS)

# Known vulnerabilities in the installed (pinned) dependencies, with pip-audit. It needs PyPI's
# per-release JSON API or OSV; a package that could not be checked is a failure, never a silent pass
# (AUDIT_ARGS=--allow-unreachable reports it loudly and goes on).
audit: devdeps
	$(PY) scripts/audit_dependencies.py $(AUDIT_ARGS)
