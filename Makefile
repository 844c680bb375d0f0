# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv and the jar cache first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CODE := streaming tests benchmarks deploy
# Test runs keep compiled Python in the venv, never beside the sources: where the environment sets
# PYTHONDONTWRITEBYTECODE, every pytest worker rewrote and compiled every test module again, ~2.3 s a process
# (docs/decisions/test-costs.md).
TEST_ENV := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache

.PHONY: help demo test quick bench-smoke check docs install jars lint format bench clean deploy

help:  ## what each target does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 20

demo: install jars  ## set up, generate ~3,000 FHIR Encounters, ingest them locally, print a summary
	$(VENV)/bin/bronze-encounter demo

test: install jars check  ## set up, the static checks, then the whole suite (unit, Spark + Hudi, moto, the fault harness)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadgroup -m "not bench"

quick: install check  ## the static checks and the tests that start no JVM, on both cores (seconds, not minutes)
	$(TEST_ENV) $(PY) -m pytest -m "not slow" -n 2

# The benchmark harness's own test (every scenario at tiny sizes, every figure produced; ~10 minutes alone):
# CI runs it after `make test`; a change to benchmarks/ runs it too.
bench-smoke: install jars  ## the benchmarks at tiny sizes: every figure, table and plot is produced (not how fast)
	$(TEST_ENV) $(PY) -m pytest -m bench

check: install  ## ruff (lint and format), mypy --strict on streaming/, benchmarks/ and deploy/, the import layers, cfn-lint
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/cfn-lint deploy/*.json

docs: install jars  ## rewrite every documentation block made from the code (the catalog's starts a local Spark)
	$(PY) -m streaming.generated

install: $(STAMP)  ## the .venv with the project and its pinned tools (again when pyproject.toml changes)

# Re-install whenever pyproject.toml changes; the stamp keeps repeated runs instant.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (Glue 5.1 runs 3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Hudi, hadoop-aws and the AWS SDK bundle from Maven Central into ~/.cache/bronze-encounter/jars (SHA-1 checked).
jars: install  ## Hudi, hadoop-aws and the AWS SDK bundle from Maven Central into the jar cache
	$(PY) -m streaming.lakehouse.jars > /dev/null

lint: check  ## the same as check

format: install  ## ruff format the code in place
	$(VENV)/bin/ruff format $(CODE)

# Every benchmark at full size (a few hours on 2 cores; Delta and Iceberg jars fetched into the jar cache
# first); JSON, Markdown and PNG plots land in benchmarks/results/. e.g. make bench BENCH_ARGS="--only backfill --scale 0.1"
bench: install jars  ## every benchmark at full size (hours); BENCH_ARGS="--only backfill --scale 0.1"
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# make deploy STACK=name [LANDING_BUCKET=b LAKEHOUSE_BUCKET=b ARTIFACTS_BUCKET=b (a new stack)] [YES=1] [DRY_RUN=1]
#   [VERSION=v | ROLLBACK=1] [PROFILE=p] [REGION=r] [DEPLOY_ARGS="--param WorkerType=G.2X --restart ..."]
# builds and uploads a version, prints the change set, applies it once confirmed (YES=1: without asking) and
# restarts the job on its checkpoint; parameters not given keep the stack's values. VERSION= or ROLLBACK=1 deploys
# a version uploaded before. docs/operations.md has the rest.
deploy: install  ## deploy to AWS (docs/deploy.md): STACK=... LANDING_BUCKET=... ..
	$(PY) deploy/deploy.py --stack $(or $(STACK),bronze-encounter) \
		$(if $(LANDING_BUCKET),--landing-bucket $(LANDING_BUCKET)) \
		$(if $(LAKEHOUSE_BUCKET),--lakehouse-bucket $(LAKEHOUSE_BUCKET)) \
		$(if $(ARTIFACTS_BUCKET),--artifacts-bucket $(ARTIFACTS_BUCKET)) \
		$(if $(VERSION),--version $(VERSION)) $(if $(ROLLBACK),--rollback) $(if $(YES),--yes) $(if $(DRY_RUN),--dry-run) \
		$(if $(PROFILE),--profile $(PROFILE)) $(if $(REGION),--region $(REGION)) $(DEPLOY_ARGS)

clean:  ## remove the .venv and local work folders
	rm -rf $(VENV) work data .pytest_cache .ruff_cache
