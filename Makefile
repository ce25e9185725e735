# Tollgate developer tasks. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(sort $(shell find protos -name "*.proto"))
COMPOSE_VENV := .venv-compose
# Every extra: the dev venv and the lock hold all of them.
EXTRAS := dev,bench,ratelimit,cache,router,costs,tls
LOCK_VENV := .venv-lock

.PHONY: install lock lock-check dev test test-integration test-e2e test-clients proto proto-check lint breaking format typecheck compose-check k8s-check check bench clean

## install: .venv with every extra, at the versions pinned in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	# A venv made before Envoy's contract was vendored (protos/envoy) still holds
	# xds-protos, whose envoy package shadows gen/python's. Uninstalling it also deletes
	# the copies of googleapis-common-protos' and opentelemetry-proto's modules it
	# shipped over theirs, so those two are reinstalled after it.
	if $(BIN)/python -m pip show --quiet xds-protos 2>/dev/null; then \
	  $(BIN)/python -m pip uninstall --quiet --yes xds-protos && \
	  $(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
	    -c constraints.txt googleapis-common-protos opentelemetry-proto; \
	fi
	touch $(STAMP)

install: $(STAMP)

## lock: re-resolve every dependency of every extra (the newest pyproject.toml allows)
## in a scratch venv and pin the result in constraints.txt, which `make install`, the
## images (services/*/Dockerfile) and CI install with. Python 3.11, as in the images:
## markers make pins per-version. See docs/development.md.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 11), \
	  "make lock needs Python 3.11, the images'"'"' Python: make lock PYTHON=python3.11"'
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	{ printf '%s\n' \
	  '# Every distribution Tollgate installs with all its extras, pinned. Written by' \
	  '# `make lock` (Python 3.11); do not edit by hand: change pyproject.toml, then run' \
	  '# `make lock`. `make install`, services/*/Dockerfile and CI install with' \
	  '# `pip install -c constraints.txt`; `make lock-check` checks it against' \
	  '# pyproject.toml. See docs/development.md.'; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude pip --exclude-editable; \
	  } > constraints.txt.new
	# Unchanged pins keep the file's date, so .venv is not reinstalled for nothing.
	cmp -s constraints.txt.new constraints.txt && rm constraints.txt.new \
	  || mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

## lock-check: constraints.txt pins exactly what pyproject.toml pulls in, within its
## ranges, the venv holds those versions, and every install uses the file.
lock-check: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit/test_constraints.py

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

## proto: the Python stubs of protos/ (Tollgate's contracts and the vendored Envoy
## rate-limit contract, protos/envoy/README.md) into gen/python/{tollgate,envoy}.
proto: $(STAMP)
	rm -rf gen/python/tollgate gen/python/envoy
	mkdir -p gen/python
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=gen/python --pyi_out=gen/python --grpc_python_out=gen/python $(PROTOS)
	find gen/python/tollgate gen/python/envoy -type d -exec touch {}/__init__.py \;

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

check: lock-check lint typecheck proto-check compose-check k8s-check test

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
	rm -rf $(VENV) $(COMPOSE_VENV) $(LOCK_VENV) .mypy_cache .ruff_cache .pytest_cache
