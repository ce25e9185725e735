# Tollgate developer tasks. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(sort $(shell find protos -name "*.proto"))
COMPOSE_VENV := .venv-compose

.PHONY: install dev test test-integration test-e2e proto proto-check lint format typecheck compose-check check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,ratelimit,cache,router,costs]'
	touch $(STAMP)

install: $(STAMP)

## dev: run the whole suite on embedded defaults (simulator, five services)
dev: $(STAMP)
	$(BIN)/tollgate dev

## test: the whole test suite (unit, service, integration, end to end)
test: $(STAMP)
	TOLLGATE_REQUIRE_INTEGRATION=1 $(BIN)/python -m pytest -q

test-integration: $(STAMP)
	TOLLGATE_REQUIRE_INTEGRATION=1 $(BIN)/python -m pytest -q -m integration

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e

proto: $(STAMP)
	rm -rf gen/python/tollgate
	mkdir -p gen/python
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=gen/python --pyi_out=gen/python --grpc_python_out=gen/python $(PROTOS)
	find gen/python/tollgate -type d -exec touch {}/__init__.py \;

proto-check: proto
	git diff --exit-code -- gen/
	test -z "$$(git status --porcelain -- gen/)"

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code

format: $(STAMP)
	$(BIN)/ruff format services tests bench
	$(BIN)/ruff check --fix services tests bench
	$(BIN)/buf format -w

typecheck: $(STAMP)
	$(BIN)/mypy services tests

## compose-check: validate docker-compose.yml without a Docker engine
$(COMPOSE_VENV)/.installed:
	test -x $(COMPOSE_VENV)/bin/python || $(PYTHON) -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install --quiet 'cython<3' wheel
	$(COMPOSE_VENV)/bin/pip install --quiet --no-build-isolation 'pyyaml==5.4.1'
	$(COMPOSE_VENV)/bin/pip install --quiet 'docker-compose==1.29.2'
	touch $@

compose-check: $(COMPOSE_VENV)/.installed
	$(COMPOSE_VENV)/bin/docker-compose -f docker-compose.yml config -q

check: lint typecheck proto-check compose-check test

clean:
	rm -rf $(VENV) $(COMPOSE_VENV) .mypy_cache .ruff_cache .pytest_cache
