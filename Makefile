# molesite: `make run` starts the site (web + worker) on the embedded default; `make test` tests it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DATA ?= ../shared/data/ham10000
# Local commands run in development mode unless told otherwise (production: see README).
LOCAL_ENV := DEBUG=$${DEBUG:-true} SITE_URL=$${SITE_URL:-http://127.0.0.1:$(PORT)} PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: install run migrate superuser reviewer test test-integration test-e2e train evaluate bench clean

install: $(BIN)/.installed

# A venv without a working pip (its creation failed half-way, e.g. Debian without python3.11-venv,
# whose ensurepip is missing) is made again from scratch. constraints.txt pins every package,
# dependencies included, to the known-good environment's versions. requirements-dev.txt is
# requirements.txt (what the image installs) plus the tests, honcho and JAX.
$(BIN)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV) || { \
	  echo "Could not create $(VENV) with $(PYTHON). On Debian or Ubuntu without ensurepip:" \
	       "apt-get install python3.11-venv, then make install again." >&2; exit 1; }
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements-dev.txt -c constraints.txt
	touch $@

migrate: install
	$(LOCAL_ENV) $(BIN)/python manage.py migrate --noinput

# honcho reads no .env (-e /dev/null): it would override the environment, DEBUG=true included,
# with a production .env's values; the settings read that file themselves, the environment first.
run: migrate
	@echo "molesite on http://127.0.0.1:$(PORT)  (Ctrl-C stops web and worker)"
	$(LOCAL_ENV) $(BIN)/honcho start -e /dev/null -f Procfile -p $(PORT)

superuser: migrate
	$(LOCAL_ENV) $(BIN)/python manage.py createsuperuser

reviewer: migrate
	$(LOCAL_ENV) $(BIN)/python manage.py createreviewer

test: install
	$(BIN)/pytest tests/unit -q

# The machine's Postgres and Redis (override either variable to point elsewhere).
test-integration: install
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15} \
	$(BIN)/pytest tests/integration -q

test-e2e: install
	$(BIN)/pytest tests/e2e -q

train: install
	$(BIN)/python -m ml train --data $(DATA) --out ml/artifacts

# The model's own validation split: the rest of the folder is what it was trained on.
evaluate: install
	$(BIN)/python -m ml evaluate --data $(DATA) --split val --json var/evaluation.json

bench: install
	$(BIN)/python bench/bench_inference.py

clean:
	rm -rf var staticfiles .pytest_cache
