# chainmail — developer targets. `make demo` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := docker-registry chromium
NPM_DIR := tests/js

.PHONY: help demo test test-fast lint bench images bundles system-deps clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/chainmail: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.test-deps: $(BIN)/chainmail pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

demo: $(BIN)/chainmail ## sign and verify the bundled example PipelineRun (no cluster needed)
	$(BIN)/chainmail demo

system-deps: ## Debian packages and npm verifiers the tests use (installed only when missing)
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: missing$$missing (tests needing them will skip with a reason)"; fi; \
	fi
	@if command -v npm >/dev/null && [ ! -d $(NPM_DIR)/node_modules/@sigstore/verify ]; then \
	  npm install --silent --no-audit --no-fund --prefix $(NPM_DIR) >/dev/null || echo "warning: npm install failed"; fi

test: $(VENV)/.test-deps system-deps ## install everything the tests need, then run them
	$(BIN)/ruff check steps tests tasks bench
	$(BIN)/pytest -q

test-fast: $(VENV)/.test-deps ## tests only, no installs
	$(BIN)/pytest -q -x

lint: $(VENV)/.test-deps ## ruff
	$(BIN)/ruff check steps tests tasks bench

bench: $(VENV)/.test-deps system-deps ## benchmarks; results in bench/results/
	$(BIN)/pytest -q -m bench tests/bench -p no:cacheprovider -o addopts=""

images: ## build the step image (needs docker or podman)
	$${CONTAINER_ENGINE:-docker} build -f images/chainmail/Containerfile -t chainmail:dev .

bundles: $(BIN)/chainmail ## push the Tekton bundle: make bundles BUNDLE=registry/chainmail/bundle:0.1.0
	$(BIN)/chainmail catalog bundle push $(BUNDLE) $$(sed -n "s/^ *path: /-f /p" catalog.yaml)

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.tmp
