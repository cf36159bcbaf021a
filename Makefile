# chainmail — developer targets. `make demo` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NPM_DIR := tests/js
# the npm packages the tests use: the independent verifier, the local Sigstore stack and a third-party signer
NPM_PACKAGES := @sigstore/verify @sigstore/mock @sigstore/sign

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

system-deps: ## Debian packages and npm verifiers the tests use (installed when missing; fails when it cannot)
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	command -v jq >/dev/null || missing="$$missing jq"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	    echo "error: missing$$missing and cannot install them (needs root and apt-get); install them, or run make test-fast" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing:$$missing"; \
	  if command -v fuser >/dev/null; then \
	    for i in $$(seq 120); do \
	      fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock >/dev/null 2>&1 || break; \
	      [ "$$i" = 1 ] && echo "waiting for another apt/dpkg process to finish..."; sleep 5; \
	    done; \
	  fi; \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq || { echo "error: apt-get update failed" >&2; exit 1; }; \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
	    $$missing >/dev/null || { echo "error: apt-get install$$missing failed" >&2; exit 1; }; \
	fi
	@for pkg in $(NPM_PACKAGES); do [ -d $(NPM_DIR)/node_modules/$$pkg ] || need=1; done; \
	if [ -n "$$need" ]; then \
	  npm install --silent --no-audit --no-fund --prefix $(NPM_DIR) >/dev/null \
	    || { echo "error: npm install in $(NPM_DIR) failed" >&2; exit 1; }; \
	  for pkg in $(NPM_PACKAGES); do [ -d $(NPM_DIR)/node_modules/$$pkg ] \
	    || { echo "error: npm install left no $(NPM_DIR)/node_modules/$$pkg" >&2; exit 1; }; done; \
	fi

test: $(VENV)/.test-deps system-deps ## install everything the tests need, then run them
	$(BIN)/ruff check steps tests tasks bench
	$(BIN)/pytest -q

test-fast: $(VENV)/.test-deps ## tests only, no installs
	$(BIN)/pytest -q -x

lint: $(VENV)/.test-deps ## ruff
	$(BIN)/ruff check steps tests tasks bench

bench: $(VENV)/.test-deps system-deps ## benchmarks; results in bench/results/, then README's performance tables
	$(BIN)/pytest -q -m bench tests/bench -p no:cacheprovider -o addopts=""
	$(BIN)/python bench/readme_table.py

images: ## build the step image (needs docker or podman)
	$${CONTAINER_ENGINE:-docker} build -f images/chainmail/Containerfile -t chainmail:dev .

bundles: $(BIN)/chainmail ## push the Tekton bundle: make bundles BUNDLE=registry/chainmail/bundle:0.1.0
	$(BIN)/chainmail catalog bundle push $(BUNDLE) $$(sed -n "s/^ *path: /-f /p" catalog.yaml)

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.tmp
