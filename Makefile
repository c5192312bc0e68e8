# The two commands of the README's quick start, and the checks CI runs.
#   make run   install what is missing, then serve local mode in the foreground
#   make test  install what is missing, then lint, type-check and run the tests
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= /usr/bin/python3
VENV ?= .venv
STATE_DIR ?= .state
APT_PACKAGES := bubblewrap python3-venv socat chromium
PYTEST_ARGS ?=

# Root runs apt-get directly; anyone else goes through sudo when it is there.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help run test check lint typecheck unit integration bench deps venv clean

help:
	@echo "make run    set up and serve local mode on :$${PORT:-8080} (AUTH_TOKEN from env or generated)"
	@echo "make test   set up and run lint, type checks and the unit + integration tests"
	@echo "make bench  run the benchmarks in bench/"

deps: $(STATE_DIR)/.deps-stamp
$(STATE_DIR)/.deps-stamp: Makefile
	@mkdir -p $(STATE_DIR)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml $(STATE_DIR)/.deps-stamp
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,browser,kubernetes]'
	@touch $@

run: venv
	@if [ -z "$$AUTH_TOKEN" ]; then \
	  if [ ! -s $(STATE_DIR)/auth-token ]; then \
	    umask 077; $(VENV)/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > $(STATE_DIR)/auth-token; \
	    echo "Generated AUTH_TOKEN (saved in $(STATE_DIR)/auth-token): $$(cat $(STATE_DIR)/auth-token)"; \
	  else echo "Using AUTH_TOKEN from $(STATE_DIR)/auth-token"; fi; \
	fi; \
	AUTH_TOKEN="$${AUTH_TOKEN:-$$(cat $(STATE_DIR)/auth-token)}" \
	  exec $(VENV)/bin/python -m controller

lint: venv
	$(VENV)/bin/ruff check controller runner-image browser-image tests bench
	$(VENV)/bin/ruff format --check controller runner-image browser-image tests bench

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

integration: venv
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

check: lint typecheck
	$(VENV)/bin/pytest -m "not e2e" $(PYTEST_ARGS)

test: check

bench: venv
	$(VENV)/bin/python bench/execute_bench.py

clean:
	rm -rf $(VENV) $(STATE_DIR) *.egg-info
