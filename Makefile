# blueprintd — two commands matter on a fresh machine:
#   make demo   start an embedded local fleet and roll the GPU platform blueprint onto it
#   make test   lint + type check + the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install binaries lint typecheck unit test demo demo-down bench crds protos clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## virtualenv with the project and its test/dev tools

binaries: install  ## find or build kube-apiserver, controller-manager, scheduler, etcd, helm, kwok (pinned; built once from the Go proxy)
	$(PY) -m blueprintd.devfleet.binaries

lint: install
	$(BIN)/ruff check blueprintd tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install  ## the tests that need no API server
	$(BIN)/pytest -q -m 'not gpu and not fleet' $(PYTEST_ARGS)

test: lint typecheck binaries  ## everything CI runs
	$(BIN)/pytest $(PYTEST_ARGS)

demo: binaries  ## local fleet (management + 3 members) converging on the GPU platform blueprint
	$(BIN)/blueprintd demo

demo-down: install
	$(BIN)/blueprintd dev down --dir .blueprintd-fleet

bench: binaries  ## all benchmarks; writes docs/benchmarks.md
	$(PY) -m benchmarks

crds: install  ## regenerate crds/ from the pydantic models
	$(PY) -m blueprintd.api.crdgen

protos: install  ## regenerate the DRA protobuf modules from blueprintd/dra/proto/*.proto
	$(PY) -m blueprintd.dra.proto.generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
