# Two commands on a fresh machine: `make run` serves the blog, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv installs the lock; it comes from PyPI into the virtualenv, pinned here.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
UV_STAMP := $(VENV)/.uv-$(UV_VERSION)
# uv ships its own root certificates; read the system's instead, so a TLS-inspecting proxy
# trusted by the machine is trusted by uv too. uv never downloads a Python of its own here.
export UV_SYSTEM_CERTS ?= 1
export UV_PYTHON_DOWNLOADS ?= never
HOST ?= 127.0.0.1
PORT ?= 8000
PG_BIN := /usr/lib/postgresql/15/bin
# Each xdist worker starts its own throwaway PostgreSQL cluster; tests that share one costly
# fixture (the simulated cluster) are grouped onto one worker.
TEST_WORKERS ?= 2
# axe-core for the browser accessibility test, pinned in tests/e2e/package-lock.json.
AXE := tests/e2e/node_modules/axe-core/axe.min.js

.PHONY: install migrate run test lint demo backup check lock system-deps clean cluster cluster-down

install: $(STAMP)

# Reinstall only when the lock file or pyproject.toml changes: every package is checked against
# its hashes, and any package the lock no longer lists is removed (the project itself too, so
# it is installed after the sync: editable, without dependencies, for the `inkwell` command).
$(STAMP): requirements.lock pyproject.toml | $(UV_STAMP)
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --editable .
	touch $@

# Once: the virtualenv and uv in it (again only when UV_VERSION changes). The virtualenv gets
# no pip of its own (seeding one costs seconds; use `.venv/bin/uv pip`): the interpreter's pip
# installs uv into it, or, where that pip is missing or too old for --python, a pip seeded then.
PIP_UV := --disable-pip-version-check install --quiet uv==$(UV_VERSION)
$(UV_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(BIN)/python $(PIP_UV) 2>/dev/null \
	  || { $(BIN)/python -m ensurepip --default-pip >/dev/null && $(BIN)/python -m pip $(PIP_UV); }
	rm -f $(VENV)/.uv-*
	touch $@

# Every command below is `inkwell`'s (cli.py); `.venv/bin/inkwell --help` lists them all.
migrate: install
	$(BIN)/inkwell migrate

run: migrate
	$(BIN)/inkwell serve --host $(HOST) --port $(PORT)

demo: migrate
	$(BIN)/inkwell seed --users 20 --posts 200

# A consistent copy of the live database (the server may keep running), into backups/
# unless OUTPUT=path is given: SQLite's online backup API, or pg_dump for PostgreSQL.
backup: install
	$(BIN)/inkwell backup $(if $(OUTPUT),--output $(OUTPUT))

# The deployment self-check: fails, listing the problems, unless the settings are fit for
# production.
check: install
	$(BIN)/inkwell check

# The suite needs PostgreSQL 15 server binaries, Debian's Chromium, npm (axe-core, the Nu checker,
# Lighthouse), Java (the Nu checker runs on it), and nginx, openssl and iproute2 (the cluster);
# install them when missing.
system-deps:
	@if [ ! -x $(PG_BIN)/initdb ] || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/npm ] || ! command -v java >/dev/null \
	    || [ ! -x /usr/sbin/nginx ] || ! command -v openssl >/dev/null || ! command -v ip >/dev/null; then \
	  extra=; [ -x /usr/bin/npm ] || extra="nodejs npm"; \
	  command -v java >/dev/null || extra="$$extra default-jre-headless"; \
	  [ -x /usr/sbin/nginx ] || extra="$$extra nginx"; \
	  command -v openssl >/dev/null || extra="$$extra openssl"; \
	  command -v ip >/dev/null || extra="$$extra iproute2"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 chromium $$extra >/dev/null; \
	  else \
	    echo "Missing PostgreSQL 15, Chromium, npm or Java: sudo apt-get install postgresql-15 chromium $$extra" >&2; exit 1; \
	  fi; \
	fi

# Reinstall axe-core only when it is missing or the lock file changes.
$(AXE): tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund --silent
	touch $@

test: install system-deps $(AXE)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# PostgreSQL, two app hosts and nginx, each in a network namespace of its own (needs root);
# the balancer's URL is the last line printed. deploy/cluster.py tells more.
cluster: install system-deps
	$(BIN)/python deploy/cluster.py up

cluster-down:
	$(PYTHON) deploy/cluster.py down

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

# Regenerate requirements.lock from pyproject.toml: every package, direct and transitive, dev
# extras included, with hashes, for every platform. Versions already in the lock are kept where
# pyproject.toml allows them; UPGRADE=1 takes the newest instead.
lock: | $(UV_STAMP)
	$(UV) pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) \
	  --quiet --output-file requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
