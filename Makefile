# The two commands of the README's quick start, and the checks CI runs.
#   make run   install what is missing, then serve local mode in the foreground
#   make test  install what is missing, then lint, type-check and run the tests
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= /usr/bin/python3
VENV ?= .venv
STATE_DIR ?= .state
# libatomic1: the Node.js binary inside the Playwright package (browser agents) needs it.
# curl, unzip: a Go toolchain from the module proxy to build helm, where there is none.
INSTALL_BROWSERS ?= yes
APT_PACKAGES := bubblewrap python3-venv socat curl unzip \
	$(if $(filter yes,$(INSTALL_BROWSERS)),chromium libatomic1)
PYTEST_ARGS ?=

# Root runs apt-get directly; anyone else goes through sudo when it is there.
ROOT_USER := $(filter 0,$(shell id -u))
SUDO := $(if $(ROOT_USER),,sudo)
# The Python environment the sandboxed code runs with (numpy, pandas, matplotlib); the
# service finds it here by default (see SANDBOX_PYTHON in the README).
SANDBOX_ENV ?= $(if $(ROOT_USER),/var/lib/sandbox-controller/sandbox-env,$(CURDIR)/.state/sandbox-env)
# The browser agents' own interpreter (Playwright and what the agent imports): as root the
# agents run as unprivileged uids, which must be able to read it wherever the checkout is.
BROWSER_ENV ?= $(if $(ROOT_USER),/var/lib/sandbox-controller/browser-env,$(CURDIR)/.state/browser-env)

.PHONY: help run test check lint typecheck unit integration bench soak deps serve-venv venv sandbox-env browser-env install test-v2 images image-tag chart-readme clean

# Build caches outside the clone (tests/cluster): the system's as root, else this user's.
export CLUSTER_CACHE ?= $(if $(ROOT_USER),/var/cache/sandbox-controller/cluster,$(HOME)/.cache/sandbox-controller/cluster)

help:
	@echo "make run    set up and serve local mode on :$${PORT:-8080} (AUTH_TOKEN from env or generated)"
	@echo "make test   set up and run lint, type checks and the unit + integration tests"
	@echo "make e2e    build (or take from cache) a local Kubernetes, run the e2e tier (root)"
	@echo "make test-v2  the cgroup v2 tier, in a Debian 13 VM under QEMU (root)"
	@echo "make install  local mode as a systemd service (root; docs/install.md)"
	@echo "make images the three images with docker, podman or buildah (IMAGE_BUILDER), tagged by content"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make soak   10,000 sequential and 1,000 concurrent mixed executions, then leaks (root)"

deps: $(STATE_DIR)/.deps-stamp
$(STATE_DIR)/.deps-stamp: Makefile
	@mkdir -p $(STATE_DIR)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

# Serving needs the service alone (its browser agents have browser-env); the checks also
# need the development tools and the Kubernetes extras.
serve-venv: $(VENV)/.serve-stamp
$(VENV)/.serve-stamp: pyproject.toml client/pyproject.toml $(STATE_DIR)/.deps-stamp
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml client/pyproject.toml $(STATE_DIR)/.deps-stamp
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,browser,kubernetes]'
	@touch $(VENV)/.serve-stamp $@

sandbox-env: $(SANDBOX_ENV)/.stamp
$(SANDBOX_ENV)/.stamp: runner-image/sandbox-requirements.txt $(STATE_DIR)/.deps-stamp
	@test -x $(SANDBOX_ENV)/bin/python3 || /usr/bin/python3 -m venv $(SANDBOX_ENV)
	$(SANDBOX_ENV)/bin/pip install -q --upgrade pip
	$(SANDBOX_ENV)/bin/pip install -q -r runner-image/sandbox-requirements.txt
	@# setuptools' distutils shim would be imported at every sandbox start; not needed.
	@rm -f $(SANDBOX_ENV)/lib/python3*/site-packages/distutils-precedence.pth
	@chmod -R a+rX $(SANDBOX_ENV)
	@touch $@

browser-env: $(BROWSER_ENV)/.stamp
$(BROWSER_ENV)/.stamp: browser-image/requirements.txt $(STATE_DIR)/.deps-stamp
	@test -x $(BROWSER_ENV)/bin/python3 || /usr/bin/python3 -m venv $(BROWSER_ENV)
	$(BROWSER_ENV)/bin/pip install -q --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BROWSER_ENV)/bin/pip install -q -r browser-image/requirements.txt
	@chmod -R a+rX $(BROWSER_ENV)
	@touch $@

run: serve-venv sandbox-env browser-env
	@if [ -z "$$AUTH_TOKEN" ]; then \
	  if [ ! -s $(STATE_DIR)/auth-token ]; then \
	    (umask 077; $(VENV)/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > $(STATE_DIR)/auth-token); \
	    echo "Generated AUTH_TOKEN (saved in $(STATE_DIR)/auth-token): $$(cat $(STATE_DIR)/auth-token)"; \
	  else echo "Using AUTH_TOKEN from $(STATE_DIR)/auth-token"; fi; \
	fi; \
	AUTH_TOKEN="$${AUTH_TOKEN:-$$(cat $(STATE_DIR)/auth-token)}" \
	SANDBOX_PYTHON="$${SANDBOX_PYTHON:-$(SANDBOX_ENV)/bin/python3}" \
	BROWSER_PYTHON="$${BROWSER_PYTHON:-$(BROWSER_ENV)/bin/python3}" \
	  exec $(VENV)/bin/python -m controller

SOURCES := controller runner-image browser-image sandbox_common client tests bench

lint: venv
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

TEST_ENV = SANDBOX_PYTHON=$(SANDBOX_ENV)/bin/python3 BROWSER_PYTHON=$(BROWSER_ENV)/bin/python3

integration: venv sandbox-env browser-env helm-bin
	$(TEST_ENV) $(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

check: lint typecheck sandbox-env browser-env helm-bin
	$(TEST_ENV) $(VENV)/bin/pytest -m "not e2e" $(PYTEST_ARGS)

test: check

# Local mode as a systemd service (docs/install.md), as root; INSTALL_BROWSERS=no leaves
# out Chromium and the browsers' environment (no browser sessions then).
install: deps sandbox-env $(if $(filter yes,$(INSTALL_BROWSERS)),browser-env)
	SANDBOX_ENV=$(SANDBOX_ENV) BROWSER_ENV=$(if $(filter yes,$(INSTALL_BROWSERS)),$(BROWSER_ENV)) \
	  deploy/install.sh

# The cgroup v2 tier: a Debian 13 VM under QEMU (tests/vm), as root.
test-v2:
	tests/vm/run.sh

# The e2e tier on a real single-node Kubernetes built from upstream (tests/cluster).
include tests/cluster/cluster.mk

# helm, for the chart's tests in the integration tier (built from its module, cached).
helm-bin: $(STATE_DIR)/.deps-stamp
	@tests/cluster/build.sh helm
e2e: venv

# The three images, for kind or a registry (docs/kubernetes.md). The tag follows the
# content (the commit, and a digest of uncommitted changes), so that a rebuild rolls
# the pods of an upgraded release; IMAGE_REPOSITORY puts them under your registry.
IMAGE_BUILDER ?= $(firstword $(foreach b,docker podman buildah,$(if $(shell command -v $(b)),$(b))))
IMAGE_REPOSITORY ?= localhost
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD)$(shell git status --porcelain --untracked-files=no | grep -q . && echo -$$(git diff HEAD | sha256sum | cut -c1-8))
images:
	@test -n "$(IMAGE_BUILDER)" || { echo "no docker, podman or buildah: install one, or set IMAGE_BUILDER"; exit 1; }
	$(IMAGE_BUILDER) build -f runner-image/Dockerfile -t $(IMAGE_REPOSITORY)/sandbox-runner:$(IMAGE_TAG) .
	$(IMAGE_BUILDER) build -f controller/Dockerfile -t $(IMAGE_REPOSITORY)/sandbox-controller:$(IMAGE_TAG) .
	$(IMAGE_BUILDER) build -f browser-image/Dockerfile -t $(IMAGE_REPOSITORY)/sandbox-browser:$(IMAGE_TAG) .
	@echo "IMAGE_TAG=$(IMAGE_TAG)"
image-tag:
	@echo $(IMAGE_TAG)

# helm/README.md's table of values, from values.yaml's `# --` comments (the chart's
# tests check it is current).
chart-readme: venv
	$(VENV)/bin/python tests/chart_values.py

bench: venv sandbox-env browser-env
	@command -v wrk >/dev/null || { $(SUDO) apt-get install -y -qq wrk || echo "no wrk: the throughput run uses Python clients"; }
	$(TEST_ENV) $(VENV)/bin/python bench/execute_bench.py
	$(VENV)/bin/python bench/api_bench.py
	$(TEST_ENV) $(VENV)/bin/python bench/fairness_bench.py
	$(TEST_ENV) $(VENV)/bin/python bench/context_bench.py

# Bounded in count (SOAK_ARGS, e.g. --sequential 500 --concurrent 200) and on loopback only.
soak: venv sandbox-env browser-env
	$(TEST_ENV) $(VENV)/bin/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(STATE_DIR) *.egg-info
