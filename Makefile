# Tollgate developer tasks. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(sort $(shell find protos -name "*.proto"))
COMPOSE_VENV := .venv-compose

.PHONY: install dev test test-integration test-e2e test-clients proto proto-check lint breaking format typecheck compose-check k8s-check check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,ratelimit,cache,router,costs]'
	# xds-protos (Envoy's stubs) ships an old copy of opentelemetry-proto's modules;
	# whichever installs last wins. Reinstall opentelemetry-proto last, always.
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
	  "opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
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

## test-clients: the Node.js and Python example clients against a suite (npm ci first)
test-clients: $(STAMP)
	TOLLGATE_REQUIRE_INTEGRATION=1 $(BIN)/python -m pytest -q tests/e2e/test_clients_e2e.py

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
	$(BIN)/ruff check services tests bench examples/python
	$(BIN)/ruff format --check services tests bench examples/python
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	$(MAKE) breaking

## breaking: no contract change that breaks clients (buf's FILE rules, buf.yaml).
## "Against main" alone is not enough: CI runs in a fresh clone whose only branch is
## main with HEAD at its tip, where main against itself passes whatever landed; and
## HEAD~1 alone is not either, because one submission carries several commits and the
## last one need not be the one that touched protos/. So this checks the working tree
## against main (all of a branch's changes) and against HEAD (uncommitted edits), then
## each of the last BREAKING_COMMITS commits that changed protos/ against its parent
## (every contract change a submission brings to main). A root commit has no parent.
BREAKING_COMMITS ?= 10
breaking: $(STAMP)
	$(BIN)/buf breaking --against '.git#branch=main'
	$(BIN)/buf breaking --against '.git#ref=HEAD'
	@depth=$$(git rev-list --count HEAD); \
	for commit in $$(git rev-list -n $(BREAKING_COMMITS) HEAD -- protos); do \
	  parent=$$(git rev-parse -q --verify "$$commit^") || continue; \
	  echo "buf breaking: $$commit against its parent $$parent"; \
	  $(BIN)/buf breaking ".git#ref=$$commit,depth=$$depth" \
	    --against ".git#ref=$$parent,depth=$$depth" || exit 1; \
	done

format: $(STAMP)
	$(BIN)/ruff format services tests bench
	$(BIN)/ruff check --fix services tests bench
	$(BIN)/buf format -w

typecheck: $(STAMP)
	$(BIN)/mypy services tests bench examples/python

## compose-check: validate docker-compose.yml without a Docker engine
$(COMPOSE_VENV)/.installed:
	test -x $(COMPOSE_VENV)/bin/python || $(PYTHON) -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install --quiet 'cython<3' wheel
	$(COMPOSE_VENV)/bin/pip install --quiet --no-build-isolation 'pyyaml==5.4.1'
	$(COMPOSE_VENV)/bin/pip install --quiet 'docker-compose==1.29.2'
	touch $@

compose-check: $(COMPOSE_VENV)/.installed
	$(COMPOSE_VENV)/bin/docker-compose -f docker-compose.yml config -q

## k8s-check: validate deploy/k8s against the pinned Kubernetes version's schemas,
## offline (no cluster); tests/unit/test_k8s_manifests.py checks cross-references.
K8S_VERSION := 1.31.0
K8S_MANIFESTS := $(filter-out deploy/k8s/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))
k8s-check: $(STAMP)
	$(BIN)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) $(K8S_MANIFESTS)

check: lint typecheck proto-check compose-check k8s-check test

## bench: the gateway's added latency, throughput and soak, both topologies (~5 min;
## BENCH_ARGS='--soak 600' for the 10-minute soak). See docs/performance.md.
bench: $(STAMP)
	$(BIN)/python bench/gateway.py $(BENCH_ARGS)

## bench-peers: Tollgate (both doors, both topologies, cache bypassed and on) next to
## LiteLLM's proxy (1 and 2 workers) against one simulator at 0 ms, in one run (~8 min).
## LiteLLM is installed, pinned, into its own virtual environment so its pins never
## touch the project's. See docs/performance.md.
LITELLM_VENV := .venv-litellm
.PHONY: bench-peers
bench-peers: $(STAMP)
	$(BIN)/python bench/peers.py --litellm-venv $(LITELLM_VENV) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(COMPOSE_VENV) .mypy_cache .ruff_cache .pytest_cache
