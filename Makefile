# Sluice — entry points. On a fresh machine: `make up` (platform) and `make test` (all tests).
SHELL := /bin/bash
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# Compose v2 plugin (`docker compose`) when present, else v1 (`docker-compose`).
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo "docker-compose")
export SLUICE_VERSION := $(VERSION)

.PHONY: help deps images up down logs test lint fmt validate load-test bench bench-sip bench-mdf profile

help:
	@echo "make up        build what is missing, start the platform, wait until healthy"
	@echo "make down      stop the platform (function containers included)"
	@echo "make images    build every image locally (no registry, no pull)"
	@echo "make test      install missing tools, build images, run every test"
	@echo "make validate  check global-function-definition.yml"
	@echo "make bench     install nginx/haproxy/wrk if missing, build images, benchmark; writes BENCHMARKS.md"
	@echo "make bench-sip REGISTER/s, Sluice next to Kamailio (installs kamailio if missing); writes BENCHMARKS.md"
	@echo "make bench-mdf group-call RTP relay, the MDF next to rtpengine (installs rtpengine-daemon if missing); writes BENCHMARKS.md"
	@echo "make profile   perf profile of the warm path (gateway → router → fast); writes bench-results/profile/"

deps:
	@scripts/deps.sh

images: deps
	@scripts/images.sh

# Rust functions are crates of their own (built inside sluice/rust-build): linted and tested
# here too.
FUNCTION_CRATES := $(wildcard faas-runtime/functions/*/Cargo.toml)
# Python functions' own unit tests (test_*.py next to handler.py; standard library only).
PYTHON_TESTS := $(wildcard faas-runtime/functions/*/test_*.py)

lint:
	cargo fmt --all -- --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings
	@for m in $(FUNCTION_CRATES); do \
	  cargo fmt --manifest-path $$m -- --check && \
	  cargo clippy --release --locked --manifest-path $$m --target-dir target/functions --all-targets -- -D warnings || exit 1; \
	done

fmt:
	cargo fmt --all

validate:
	cargo run --release --locked -q -p orchestrator -- validate global-function-definition.yml

test: images
	$(MAKE) lint
	cargo test --release --locked --workspace --no-fail-fast
	@for m in $(FUNCTION_CRATES); do cargo test --release --locked --manifest-path $$m --target-dir target/functions || exit 1; done
	@for t in $(PYTHON_TESTS); do (cd $$(dirname $$t) && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -q $$(basename $$t .py)) || exit 1; done

# `make up`: build what is missing, start the stack, wait until every service is healthy.
up: deps
	@scripts/up.sh

down:
	@$(COMPOSE) down --remove-orphans
	@ids=$$(docker ps -aq --filter label=sluice.managed=true --filter label=sluice.instance=$${SLUICE_INSTANCE:-sluice}); \
	  if [ -n "$$ids" ]; then echo "removing function containers"; docker rm -f $$ids >/dev/null; fi
	@docker network rm $${SLUICE_NETWORK:-sluice} >/dev/null 2>&1 || true

logs:
	@$(COMPOSE) logs -f --tail=100

# The load-test script against the running stack (`make up` first): `sleep?ms=200` in steps
# of 10, 30, 50 and 20 rps, 5 s each; a live table, then CSV + PNG in load-test-results/.
LOAD_ARGS ?= --url 'http://localhost:8080/sleep?ms=200' --profile steps:10,30,50,20@5s
load-test:
	cargo run --release --locked -q -p sluice-load -- $(LOAD_ARGS)

# The platform benchmark (warm path against nginx/HAProxy, cold starts, scale reaction, resource
# cost) in one run: installs nginx, haproxy and wrk if missing (no system service is started),
# builds the images, then `cargo run --release -p platform-bench`. Writes BENCHMARKS.md
# and bench-results/ (CSV per section, PNG charts). Settings: SLUICE_BENCH_* (see the bench).
bench:
	@scripts/bench.sh

# SIP registration throughput, side by side: sipp's REGISTER ramp against Sluice (make up's
# platform, 127.0.0.1:5060), Kamailio 5.6 (usrloc db_mode 0, registrar, a worker per core) and
# Sluice with digest. Writes the "SIP registration" section of BENCHMARKS.md and
# bench-results/sip.csv. Settings: SLUICE_BENCH_SIP_* (see the script).
bench-sip:
	@scripts/bench-sip.sh

bench-mdf:
	@scripts/bench-mdf.sh

# Where the CPU goes on the warm path: perf over every CPU while wrk drives `fast` through the
# gateway (autoscaling off, one replica). Writes bench-results/profile/summary.md.
profile: deps
	@scripts/profile.sh
