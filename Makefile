# Two commands on a fresh machine: `make run` serves the blog, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PG_BIN := /usr/lib/postgresql/15/bin
# Each xdist worker starts its own throwaway PostgreSQL cluster.
TEST_WORKERS ?= 2
# axe-core for the browser accessibility test, pinned in tests/e2e/package-lock.json.
AXE := tests/e2e/node_modules/axe-core/axe.min.js

.PHONY: install migrate run test lint demo backup lock system-deps clean

install: $(STAMP)

# Reinstall only when the lock file changes.
$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

migrate: install
	$(BIN)/alembic upgrade head

run: migrate
	$(BIN)/uvicorn main:app --host $(HOST) --port $(PORT)

demo: migrate
	$(BIN)/python -m seed --users 20 --posts 200

# A consistent copy of the live database (the server may keep running), into backups/
# unless OUTPUT=path is given: SQLite's online backup API, or pg_dump for PostgreSQL.
backup: install
	$(BIN)/python -m backup $(if $(OUTPUT),--output $(OUTPUT))

# The suite needs PostgreSQL 15 server binaries, Debian's Chromium and npm (for axe-core);
# install them when missing.
system-deps:
	@if [ ! -x $(PG_BIN)/initdb ] || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/npm ]; then \
	  node=; [ -x /usr/bin/npm ] || node="nodejs npm"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 chromium $$node >/dev/null; \
	  else \
	    echo "Missing PostgreSQL 15, Chromium or npm: sudo apt-get install postgresql-15 chromium $$node" >&2; exit 1; \
	  fi; \
	fi

# Reinstall axe-core only when it is missing or the lock file changes.
$(AXE): tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund --silent
	touch $@

test: install system-deps $(AXE)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Throughput and latency of every route against a bare-ASGI floor (bench/README.md); writes
# bench/results/<date>.md. Datasets are cached in bench/data/. SIZES="1k 100k 1m" adds the
# million-post dataset (about 5 minutes to build once); BENCH_SECONDS/BENCH_WARMUP shorten runs.
SIZES ?= 1k 100k
.PHONY: bench
bench: install
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "wrk is missing: sudo apt-get install wrk" >&2; exit 1; \
	  fi; }
	$(BIN)/python -m bench $(SIZES)

# Regenerate requirements.lock from pyproject.toml in a scratch virtualenv.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet ".[dev]"
	{ echo "# Exact versions of every package, direct and transitive. Regenerate with 'make lock'."; \
	  .lockvenv/bin/pip freeze --exclude inkwell; } > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
