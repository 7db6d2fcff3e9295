# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# SECRET_KEY, API_KEY_PEPPER and AUDIT_KEY from .run/secrets.env, generated on first use.
SECRETS := bin/with-secrets

.PHONY: run test test-sqlite lint install services migrate seed static clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

services: install
	@bin/ensure-redis

migrate: install
	$(SECRETS) $(BIN)/python manage.py migrate --noinput

seed: migrate
	$(SECRETS) $(BIN)/python manage.py seed_demo --if-empty

# Hashed, compressed copies of the static files, which the web server serves (WhiteNoise).
# It reads no secret, so it runs with DEBUG's defaults.
static: install
	DEBUG=1 $(BIN)/python manage.py collectstatic --noinput -v0

# Web server, Celery workers, Celery beat, the audit forwarder and simulated agents, together.
run: services seed static
	@mkdir -p .run
	$(BIN)/honcho start -f Procfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: install
	@bin/ensure-redis
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	bin/test-parts $(PYTEST_ARGS)

# The suite's database-neutral part on SQLite, the database `make run` uses when DATABASE_URL
# is unset; tests marked `postgres` (and the browser, fault and schemathesis runs) need
# PostgreSQL and are left out.
test-sqlite: install
	@bin/ensure-redis
	DATABASE_URL=sqlite:///$(CURDIR)/.run/test.sqlite3 $(BIN)/python -m pytest \
		-m "not postgres and not browser and not fault and not schemathesis" --database-only \
		$(PYTEST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* .run staticfiles test-artifacts
