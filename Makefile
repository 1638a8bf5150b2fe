# toolgate: the two commands a new user needs are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test build policy-test bench bench-steady bench-soak bench-siem bench-siem-outage bench-scale replicas fuzz-smoke fuzz-long fuzz-merge fmt lint clean stack

## Start toolgate in front of the bundled demo MCP server (SQLite audit log, shipped policies).
run:
	$(CARGO) build --release -p toolgate
	./target/release/toolgate serve --config toolgate.toml

## The whole test suite: Rust unit and integration tests, then the shipped Rego policy tests.
test:
	$(CARGO) test --locked
	$(CARGO) run --quiet --locked -p toolgate -- policy test policies
	./scripts/check-observability.sh

## Only the Rego unit tests of the shipped policies.
policy-test:
	$(CARGO) run --quiet -p toolgate -- policy test policies --verbose

## The observability stack: toolgate, PostgreSQL, OpenTelemetry collector, Jaeger, Prometheus, Grafana.
stack:
	docker compose up --build

build:
	$(CARGO) build --release -p toolgate

## Benchmarks (release): engine micro-benchmarks (criterion), then end to end direct vs an nginx hop vs through
## toolgate (stateless and session flows), audit writer, verify, storage and memory; writes BENCHMARKS.md.
## Installs nginx if missing (scripts/install-bench-deps.sh). PostgreSQL runs need TOOLGATE_TEST_POSTGRES_URL.
bench:
	./scripts/install-bench-deps.sh
	$(CARGO) build --release -p toolgate -p toolgate-bench
	$(CARGO) bench -p toolgate-bench --bench engine -- --noplot
	./target/release/toolgate-bench --toolgate ./target/release/toolgate --criterion-dir target/criterion --out BENCHMARKS.md

## The same plus the steady run: toolgate at 2 000 calls/s for STEADY_MINUTES (default 10) minutes.
STEADY_MINUTES ?= 10
bench-steady:
	./scripts/install-bench-deps.sh
	$(CARGO) build --release -p toolgate -p toolgate-bench
	$(CARGO) bench -p toolgate-bench --bench engine -- --noplot
	./target/release/toolgate-bench --toolgate ./target/release/toolgate --criterion-dir target/criterion --out BENCHMARKS.md --steady --steady-minutes $(STEADY_MINUTES)

## The soak: toolgate at SOAK_RATE (default 1 000) calls/s for SOAK_MINUTES (default 30) minutes while agents open
## and close sessions; resident memory and open descriptors per minute (its own section of BENCHMARKS.md).
SOAK_MINUTES ?= 30
SOAK_RATE ?= 1000
bench-soak:
	$(CARGO) build --release -p toolgate -p toolgate-bench
	./target/release/toolgate-bench --toolgate ./target/release/toolgate --out BENCHMARKS.md --soak --soak-minutes $(SOAK_MINUTES) --soak-rate $(SOAK_RATE)

## The SIEM comparison: toolgate at SIEM_RATE (default 1 000) calls/s for SIEM_SECONDS (default 30) s without SIEM
## sinks, then with all six on local receivers: p99 with vs without, sink lag, catch-up, CPU per delivered event.
SIEM_SECONDS ?= 30
SIEM_RATE ?= 1000
bench-siem:
	$(CARGO) build --release -p toolgate -p toolgate-bench
	./target/release/toolgate-bench --toolgate ./target/release/toolgate --out BENCHMARKS.md --siem --siem-seconds $(SIEM_SECONDS) --siem-rate $(SIEM_RATE)

## The SIEM outage: every receiver down for SIEM_OUTAGE_MINUTES (default 10) minutes under SIEM_OUTAGE_RATE (default
## 500) calls/s, then back: toolgate's resident size through it beside a control run first (same load and time, every
## receiver up; so the run takes twice as long), the sinks' lag and the catch-up time.
SIEM_OUTAGE_MINUTES ?= 10
SIEM_OUTAGE_RATE ?= 500
bench-siem-outage:
	$(CARGO) build --release -p toolgate -p toolgate-bench
	./target/release/toolgate-bench --toolgate ./target/release/toolgate --out BENCHMARKS.md --siem-outage-minutes $(SIEM_OUTAGE_MINUTES) --siem-outage-rate $(SIEM_OUTAGE_RATE)

## The scale-out comparison (docs/scale-out.md): each of SCALE_RATES (default 1000,2000) calls/s for SCALE_SECONDS (default 30) s,
## round robin through nginx over 1, 2 and 3 toolgate instances on one PostgreSQL (a fresh database per step, on the
## server of TOOLGATE_TEST_POSTGRES_URL): latency per instance, toolgate's and PostgreSQL's CPU and commits per call.
SCALE_SECONDS ?= 30
SCALE_RATES ?= 1000,2000
TOOLGATE_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
bench-scale:
	./scripts/install-bench-deps.sh
	$(CARGO) build --release -p toolgate -p toolgate-bench
	TOOLGATE_TEST_POSTGRES_URL=$(TOOLGATE_TEST_POSTGRES_URL) ./target/release/toolgate-bench --toolgate ./target/release/toolgate --out BENCHMARKS.md --scale --scale-seconds $(SCALE_SECONDS) --scale-rate $(SCALE_RATES)

## An example deployment: three toolgate replicas on one PostgreSQL (TOOLGATE_DATABASE_URL's server, database
## toolgate_replicas) behind nginx on 127.0.0.1:8090. `deploy/replicas.sh stop|status|selftest` (docs/scale-out.md).
replicas:
	$(CARGO) build --release -p toolgate
	./deploy/replicas.sh start

## Fuzzing with cargo-fuzz/libFuzzer (docs/fuzzing.md); not part of `make test` and not needed by CI. Installs
## cargo-fuzz if missing (scripts/install-fuzz-deps.sh). Every target for 60 s, seeded from fuzz/corpus/.
fuzz-smoke:
	./scripts/fuzz.sh 60

## Every target for FUZZ_MINUTES (default 10) minutes, one after another, at nice 19.
FUZZ_MINUTES ?= 10
fuzz-long:
	FUZZ_NICE=19 ./scripts/fuzz.sh $$(( $(FUZZ_MINUTES) * 60 ))

## Fold the inputs fuzz runs found (fuzz/target/corpus/) that add coverage into fuzz/corpus/ (libFuzzer merge).
## fuzz/corpus/ is committed but holds the seeds only: a merge adds thousands of files, kept locally, not
## committed (docs/fuzzing.md, "Results").
fuzz-merge:
	./scripts/fuzz.sh merge

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -f toolgate-audit.db toolgate-audit.db-wal toolgate-audit.db-shm
