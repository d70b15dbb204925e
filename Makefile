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

.PHONY: install binaries promtool image-tools image image-test lint typecheck unit test demo demo-down bench chaos crds protos clean

# Debian packages a step needs, installed when missing (CI machines start fresh; root there).
APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## virtualenv with the project and its test/dev tools

binaries: install  ## find or build kube-apiserver, controller-manager, scheduler, etcd, helm, kwok (pinned; built once from the Go proxy)
	$(PY) -m blueprintd.devfleet.binaries

promtool:  ## promtool (Debian's prometheus package): checks and unit-tests the chart's alert rules
	@command -v promtool >/dev/null || { apt-get update -q && $(APT_INSTALL) prometheus; }

image-tools:  ## mmdebstrap and umoci (Debian packages) for `make image`
	@command -v mmdebstrap >/dev/null && command -v umoci >/dev/null || { apt-get update -q && $(APT_INSTALL) mmdebstrap umoci; }

IMAGE_DIR ?= build/image
IMAGE_KEY = $$({ cat pyproject.toml image/build.sh $$(git ls-files -co --exclude-standard blueprintd); $(PY) -m pip freeze; } | sha256sum | cut -c1-16)
image: install binaries image-tools  ## the operator image as an OCI layout in build/image/oci (no registry, no Docker)
	@key=$(IMAGE_KEY); if [ "$$(cat $(IMAGE_DIR)/key 2>/dev/null)" = "$$key" ]; then \
	  echo "image up to date: $(IMAGE_DIR)/oci:$$(cat $(IMAGE_DIR)/tag) (inputs $$key)"; else \
	  image/build.sh $(IMAGE_DIR) $(PY) "$$($(PY) -c 'from blueprintd.devfleet.binaries import ensure; print(ensure().helm)')" \
	  && echo $$key > $(IMAGE_DIR)/key; fi

image-test: image  ## smoke-test the built image: --help as uid 65532 on a read-only root filesystem
	image/smoke.sh $(IMAGE_DIR)

lint: install
	$(BIN)/ruff check blueprintd tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install promtool  ## the tests that need no API server
	$(BIN)/pytest -q -m 'not gpu and not fleet' $(PYTEST_ARGS)

test: lint typecheck binaries promtool  ## everything CI runs
	$(BIN)/pytest $(PYTEST_ARGS)

demo: binaries  ## local fleet (management + 3 members) converging on the GPU platform blueprint
	$(BIN)/blueprintd demo

demo-down: install
	$(BIN)/blueprintd dev down --dir .blueprintd-fleet

bench: binaries image-tools  ## all benchmarks; writes docs/benchmarks.md
	$(PY) -m benchmarks

chaos: binaries  ## chaos suite: faults during a rollout on 3 sharded replicas; writes docs/chaos.md (~10 min)
	$(PY) -m benchmarks.chaos

crds: install  ## regenerate crds/ from the pydantic models
	$(PY) -m blueprintd.api.crdgen

protos: install  ## regenerate the DRA protobuf modules from blueprintd/dra/proto/*.proto
	$(PY) -m blueprintd.dra.proto.generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build
