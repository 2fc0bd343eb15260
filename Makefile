# cleanup-operator developer commands. `make test` is the test command CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv tools image crds crds-check test test-unit test-sim test-cluster lint demo bench mutation clean

help:
	@echo "make demo   - local control plane + simulators + operator + examples (Ctrl-C stops)"
	@echo "make test   - every test tier: unit, sim (vendor simulators), cluster (real kube-apiserver)"
	@echo "make lint   - ruff + mypy --strict"
	@echo "make image  - build the container image with podman (hack/image.sh; installs podman on first use)"
	@echo "make crds   - regenerate crds/ from the pydantic models"
	@echo "make mutation - mutation testing of the destructive decisions (decisions.py) with mutmut"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

tools:
	bash hack/tools.sh

# The Dockerfile built with podman against a Debian-built Python base, as CI builds it; cached
# (base image and layers under ~/.cache/cleanup-operator/podman), so a warm build takes seconds.
image:
	bash hack/image.sh build

crds: $(STAMP)
	$(PY) -m cleanup_operator.crdgen --out crds --chart charts/cleanup-operator

crds-check: $(STAMP)
	$(PY) -m cleanup_operator.crdgen --out crds --chart charts/cleanup-operator --check

test: $(STAMP) tools image
	$(PY) -m pytest -q -ra

test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit

test-sim: $(STAMP)
	$(PY) -m pytest -q -m sim

test-cluster: $(STAMP) tools image
	$(PY) -m pytest -q -ra -m cluster

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/ruff format --check operator tests bench hack
	$(VENV)/bin/mypy

demo: $(STAMP) tools
	$(PY) hack/demo.py

mutation: $(STAMP)
	PY=$(abspath $(PY)) bash hack/mutation.sh

# The full bench (not part of `make test`; its 20-object smoke is): BENCH_ARGS="--count 100" etc.
bench: $(STAMP) tools
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
