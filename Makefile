# hearth: one Makefile for setting up, running, testing and measuring the whole house.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian ships `docker-compose`; Docker's plugin is `docker compose`: use whichever is here.
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
             else echo "docker-compose"; fi)
export COMPOSE

.PHONY: help install proto proto-check test test-fast lint run demo bench fuzz up down images demo-compose clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: .stamp-debian $(VENV)/.stamp-pip gen/.stamp $(VENV)/bin/hearth-edge ## Debian packages + virtualenv + generated code + the gateway's edge (idempotent)

.stamp-debian: packaging/debian-packages.txt $(wildcard services/*/debian-packages.txt)
	scripts/install-debian-packages.sh
	@touch $@

$(VENV)/.stamp-pip: pyproject.toml lab/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	@# gen/hearth must exist before the editable install so that `hearth` is importable.
	$(PY) -m pip install -q grpcio-tools mypy-protobuf googleapis-common-protos
	$(PY) scripts/gen_protos.py
	@# Two distributions: the product (hearth) and its lab (hearth-lab: simulators, test
	@# harnesses, the demo), both editable.
	$(PY) -m pip install -q -e '.[dev]' -e ./lab
	@touch $@

EDGE_SOURCES := $(wildcard services/gateway/edge/src/*.rs) services/gateway/edge/build.rs \
                services/gateway/edge/Cargo.toml protos/hearth/gateway/internal/v1/edge.proto \
                protos/hearth/auth/v1/policy.proto \
                services/gateway/edge/Cargo.lock
$(VENV)/bin/hearth-edge: $(VENV)/.stamp-pip $(EDGE_SOURCES)
	scripts/build-edge.sh $@

proto: $(VENV)/.stamp-pip ## generate Python code from protos/ into gen/
	$(PY) scripts/gen_protos.py
	@touch gen/.stamp

gen/.stamp: $(VENV)/.stamp-pip $(shell find protos -name '*.proto')
	$(PY) scripts/gen_protos.py
	@touch $@

proto-check: ## fail if gen/ is stale
	$(PY) scripts/gen_protos.py --check

EDGE_CARGO := cd services/gateway/edge && cargo
HAVE_CARGO := $(shell command -v cargo >/dev/null 2>&1 && echo yes)

test: install ## every test (lab tests need root); what CI runs
	$(if $(HAVE_CARGO),$(EDGE_CARGO) test --quiet --release --locked,@echo "no cargo: hearth-edge's unit tests skipped")
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.stamp-pip ## ruff + mypy + import contracts; the contracts' AIP rules + buf lint; rustfmt + clippy for hearth-edge
	$(PY) scripts/lint_protos.py
	$(VENV)/bin/ruff check lib services lab tests bench scripts conftest.py
	$(VENV)/bin/ruff format --check lib services lab tests bench scripts conftest.py
	@# Every services/<svc>/tests/conftest.py is the module "tests.conftest" to mypy: one run each.
	$(VENV)/bin/mypy lib services lab tests bench scripts --exclude '^services/gateway/tests/'
	$(VENV)/bin/mypy services/gateway/tests
	@# product never imports lab/testing/demo, the CLI no server, services not each other
	$(VENV)/bin/lint-imports
	$(if $(HAVE_CARGO),$(EDGE_CARGO) fmt --check)
	$(if $(HAVE_CARGO),$(EDGE_CARGO) clippy --quiet --release --locked -- -D warnings)

run: install ## all services as local processes with config/local/*.yaml (no Docker)
	$(PY) scripts/run_local.py

demo: install ## a demo house in network namespaces with every service (as root)
	$(PY) -m hearth_demo

bench: install ## every benchmark under bench/, results in bench/results/
	$(PY) bench/run_all.py

# Examples per RPC and door; generated Zuul/Gerrit documents; SAP/RTP datagram draws; batches
# of datagrams sent to a real hearth-audio.
FUZZ_EXAMPLES ?= 200
FUZZ_DOCUMENTS ?= 2000
FUZZ_DATAGRAMS ?= 5000
FUZZ_LAB_BATCHES ?= 200
FUZZ_RESULTS := bench/results/fuzz.json
fuzz: install ## generated requests for every RPC, large budget (as root); figures in bench/results/fuzz.json
	rm -f $(FUZZ_RESULTS)
	export HEARTH_FIGURES_FILE=$(CURDIR)/$(FUZZ_RESULTS); code=0; \
	HEARTH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider \
	  -o timeout=3600 tests/fuzz $(PYTEST_ARGS) || code=$$?; \
	HEARTH_FUZZ_EXAMPLES=$(FUZZ_DOCUMENTS) $(PY) -m pytest -q -p no:cacheprovider \
	  -o timeout=3600 services/ci/tests/test_ci_fuzz.py $(PYTEST_ARGS) || code=$$?; \
	HEARTH_FUZZ_EXAMPLES=$(FUZZ_DATAGRAMS) HEARTH_FUZZ_LAB_EXAMPLES=$(FUZZ_LAB_BATCHES) \
	  $(PY) -m pytest -q -p no:cacheprovider -o timeout=3600 services/audio/tests/test_audio_fuzz.py \
	  services/audio/tests/test_audio_lan_input.py $(PYTEST_ARGS) || code=$$?; \
	$(PY) -m hearth_testing.figures summarize $(FUZZ_RESULTS); exit $$code

images: $(VENV)/.stamp-pip ## build every image; makes base images from Debian if none can be pulled
	scripts/build-images.sh

up: images ## docker compose up (production compose file; settings in .env, see .env.example)
	$(COMPOSE) up -d

down: ## docker compose down (production), and the lab stack if demo-compose left one
	$(COMPOSE) down
	$(PY) -m hearth_compose down

demo-compose: install images ## the demo house in containers, on a private network (as root)
	$(PY) -m hearth_compose demo

clean: ## remove generated code, virtualenv and caches
	rm -rf $(VENV) gen .stamp-* .mypy_cache .ruff_cache .pytest_cache
