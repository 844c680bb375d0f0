# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv and the jar cache first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install jars lint format bench clean deploy

demo: install jars
	$(VENV)/bin/bronze-encounter demo

test: install jars
	$(VENV)/bin/ruff check streaming tests benchmarks deploy
	$(VENV)/bin/ruff format --check streaming tests benchmarks deploy
	$(VENV)/bin/cfn-lint deploy/*.json
	$(PY) -m pytest

install: $(STAMP)

# Re-install whenever pyproject.toml changes; the stamp keeps repeated runs instant.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (Glue 5.1 runs 3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Hudi, hadoop-aws and the AWS SDK bundle from Maven Central into ~/.cache/bronze-encounter/jars (SHA-1 checked).
jars: install
	$(PY) -m streaming.jars > /dev/null

lint: install
	$(VENV)/bin/ruff check streaming tests benchmarks deploy
	$(VENV)/bin/cfn-lint deploy/*.json

format: install
	$(VENV)/bin/ruff format streaming tests benchmarks deploy

# Every benchmark at the issue's sizes (a few hours on 2 cores; Delta and Iceberg jars fetched into the jar cache
# first); JSON, Markdown and PNG plots land in benchmarks/results/. e.g. make bench BENCH_ARGS="--only backfill --scale 0.1"
bench: install jars
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# make deploy STACK=name LANDING_BUCKET=b LAKEHOUSE_BUCKET=b ARTIFACTS_BUCKET=b [DRY_RUN=1] [DEPLOY_ARGS="--restart ..."]
# builds the wheel, uploads what changed, creates or updates the stack and restarts the job on its checkpoint.
deploy: install
	$(if $(and $(LANDING_BUCKET),$(LAKEHOUSE_BUCKET),$(ARTIFACTS_BUCKET)),,$(error make deploy needs LANDING_BUCKET, LAKEHOUSE_BUCKET and ARTIFACTS_BUCKET))
	$(PY) deploy/deploy.py --stack $(or $(STACK),bronze-encounter) --landing-bucket $(LANDING_BUCKET) \
		--lakehouse-bucket $(LAKEHOUSE_BUCKET) --artifacts-bucket $(ARTIFACTS_BUCKET) $(if $(DRY_RUN),--dry-run) $(DEPLOY_ARGS)

clean:
	rm -rf $(VENV) work data .pytest_cache .ruff_cache
