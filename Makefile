# Entry points. Each target installs what it needs first (idempotent): see scripts/setup.sh.
SHELL := /bin/bash
export PATH := $(CURDIR)/.tools/bin:$(PATH)
export DOCKER_CONFIG := $(CURDIR)/.tools/docker
RELEASER := .venv/bin/releaser
EXAMPLE := examples/bmp-tcpao

.PHONY: setup demo test test-quick lint format goldens cluster e2e fuzz
setup:
	@./scripts/setup.sh

## The main job on the built-in example: validate, render, prove the digests agree; then the
## airgap rehearsal (stand-in images -> registry -> lock -> bundle -> verify -> private registry).
demo: setup
	$(RELEASER) validate $(EXAMPLE)
	$(RELEASER) render $(EXAMPLE) --out-dir .
	$(RELEASER) check $(EXAMPLE) --out-dir .
	$(RELEASER) validate examples/platform
	$(RELEASER) render examples/platform --out-dir .
	$(RELEASER) check examples/platform --out-dir .
	.venv/bin/python scripts/rehearse.py

## The whole test suite against real Helm 3/4, Compose v2, kubernetes-validate, registries and
## engines, after the checks the code claims: lint (with a complexity limit), formatting, strict
## typing and the layer order. On TEST_WORKERS workers (pytest-xdist): a module's tests stay on one
## worker, with its own engine, registries and stacks, which share nothing with another module's.
## The longest modules first (tests/conftest.py LONGEST_FIRST; xdist's own reordering is off).
## The modules marked `alone` run after the others, by themselves (docs/testing.md#the-suite-in-parallel).
TEST_WORKERS ?= 4
test: setup lint
	.venv/bin/python -m pytest --ignore=tests/e2e -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not alone"
	.venv/bin/python -m pytest --ignore=tests/e2e -m alone

## For the edit loop: every test that starts no container engine, no registry process and no qemu
## guest (the modules marked engine, registry or vm are left out; one that starts an engine or a
## registry unmarked fails), no lint.
test-quick: setup
	RELEASER_TEST_QUICK=1 .venv/bin/python -m pytest --ignore=tests/e2e -m "not engine and not registry and not vm" -n 2 --dist loadscope

## The fuzz suite's long run: 20x the cases of the CI run, fresh random seeds each time
## (tests/support/fuzz.py; the counts per target and exit code are printed at the end).
fuzz: setup
	RELEASER_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz.py tests/test_accepted_renders.py -p no:cacheprovider

lint: setup
	.venv/bin/ruff check releaser tests scripts bench
	.venv/bin/ruff format --check releaser tests scripts bench
	.venv/bin/mypy
	.venv/bin/lint-imports --no-logo  # the layer order and the commands' independence (pyproject.toml)

## Rewrite the code in the project's format (ruff format) and fix what ruff can fix by itself.
format: setup
	.venv/bin/ruff format releaser tests scripts bench
	.venv/bin/ruff check --fix releaser tests scripts bench

## Rewrite golden files after an intended change (review the diff before committing).
goldens: setup
	.venv/bin/python -m pytest tests/test_goldens.py --update-goldens

## The test cluster's components: upstream Kubernetes, etcd, containerd, runc, CNI plugins, CoreDNS,
## kube-router and local-path-provisioner built from their Go modules, cached by version outside the
## repository (~/.cache/releaser/cluster; tests/support/cluster_build.py). Cold: about 12 minutes.
cluster: setup
	.venv/bin/python -m tests.support.cluster_build

## Kubernetes end to end on a real cluster built here (tests/support/cluster.py): both examples
## from their signed bundles through registry.local:5000, the cluster's only image source.
## RELEASER_E2E_HOLD=FILE keeps the cluster up after the tests until FILE is removed.
e2e: cluster
	.venv/bin/python -m pytest tests/e2e -v -rs -p no:cacheprovider
