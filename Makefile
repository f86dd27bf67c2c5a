# The two commands a newcomer needs (README): `make demo` and `make test`.
# Each creates .venv with everything it needs; nothing else on the machine is assumed but
# Python 3.11+ with venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The sandbox EHR (sekmet-fhir) lives in its own environment: its FastAPI/uvicorn stack stays
# out of ours, and it is pinned with every dependency (ehr/requirements.txt).
EHR_VENV := .ehr-venv
EHR_STAMP := $(EHR_VENV)/.installed-stamp

.PHONY: demo test lint bench clean postgres redis browser reliability compiled

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(EHR_STAMP): ehr/requirements.txt
	$(PYTHON) -m venv $(EHR_VENV)
	$(EHR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EHR_VENV)/bin/python -m pip install --quiet -r ehr/requirements.txt
	touch $(EHR_STAMP)

demo: $(STAMP) $(EHR_STAMP)
	$(BIN)/theracharge demo --sekmet $(CURDIR)/$(EHR_VENV)/bin/sekmet $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache  # the layers of docs/architecture.md

# The persistence tests run on SQLite and on Debian's PostgreSQL (started on loopback by the
# tests themselves); install it when the machine lacks it (CI runs as root).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The task-queue tests and the whole-layout test start Debian's redis-server on loopback
# themselves (the broker of THERACHARGE_BROKER_URL); install it when the machine lacks it.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# The page tests drive Debian's Chromium with Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint $(EHR_STAMP) postgres redis browser
	THERACHARGE_TEST_SEKMET=$(CURDIR)/$(EHR_VENV)/bin/sekmet $(BIN)/pytest

# The whole reliability suite (RELIABILITY.md): the scenarios `make test` runs too, then the
# 10-minute soak of mixed signed traffic.
reliability: $(STAMP) $(EHR_STAMP) postgres redis
	THERACHARGE_TEST_SEKMET=$(CURDIR)/$(EHR_VENV)/bin/sekmet THERACHARGE_HOSTILE_EXAMPLES=3000 \
		$(BIN)/pytest tests/reliability tests/test_config_freshness.py tests/test_claims.py \
		tests/web/test_hook_budget.py tests/web/test_hostile_input.py tests/test_serve.py \
		tests/test_concurrency.py tests/test_overlaps.py tests/test_ledger_retention.py
	$(BIN)/python bench/bench_overlaps.py --sizes 100,1000,2000,4000,8000,10000
	THERACHARGE_TEST_SEKMET=$(CURDIR)/$(EHR_VENV)/bin/sekmet $(BIN)/python -m tests.reliability.soak --minutes 10

# What `pip install .` gives users: the decision core compiled with mypyc (hatch_build.py).
# The benchmarks measure it next to the plain-Python editable install of .venv.
COMPILED := .venv-compiled
COMPILED_STAMP := $(COMPILED)/.installed-stamp
$(COMPILED_STAMP): pyproject.toml hatch_build.py $(wildcard plugin/rules/*.py fhir_mappings/*.py)
	$(PYTHON) -m venv $(COMPILED)
	$(COMPILED)/bin/python -m pip install --quiet --upgrade pip
	THERACHARGE_COMPILE=1 $(COMPILED)/bin/python -m pip install --quiet --force-reinstall '.[dev]'
	touch $(COMPILED_STAMP)

compiled: $(COMPILED_STAMP)

bench: $(STAMP) $(COMPILED_STAMP) $(EHR_STAMP)
	for python in $(BIN)/python $(COMPILED)/bin/python; do \
		echo "== $$python"; \
		$$python bench/bench_units.py && \
		$$python bench/bench_process.py --visits 10000 && \
		$$python bench/bench_hook.py && \
		THERACHARGE_TEST_SEKMET=$(CURDIR)/$(EHR_VENV)/bin/sekmet \
			$$python bench/bench_hook_ehr.py || exit 1; \
	done

clean:
	rm -rf $(VENV) $(COMPILED) $(EHR_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
