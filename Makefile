# edgeprobe — the single entry point for people and CI.
#   make demo   run `edgeprobe demo` against the built-in simulated IoT Hub
#   make test   install what the tests need, then run every test (as root; none may skip)
#   cargo test  as any user: the fast tier, every test that needs no root (the rest skip)
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: help build release deb test-deb demo test test-deps lint fmt bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## debug build of the workspace
	$(CARGO) build --workspace

release: ## optimised edgeprobe binary in target/release
	$(CARGO) build --release -p edgeprobe

deb: release ## the .deb (cargo-deb): binary, man pages, completions, systemd units, in target/debian
	@bash packaging/deb.sh

demo: build ## run edgeprobe demo (simulated IoT Hub on loopback, MQTT blocked)
	./target/debug/edgeprobe demo

test-deps: ## install the Debian packages the tests use (idempotent)
	@bash tests/install-deps.sh

test: test-deps ## install test dependencies and run every test (root: none may skip), then the .deb's
	EDGEPROBE_TEST_ROOT=1 $(CARGO) test --workspace --no-fail-fast
	$(MAKE) test-deb

test-deb: deb ## build the .deb, install it, check it, remove it (root)
	@bash tests/deb.sh

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

bench: release ## print speed and size figures (see BENCHMARKS.md)
	@bash tests/bench.sh

clean: ## remove build output
	$(CARGO) clean
