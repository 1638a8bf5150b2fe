#!/usr/bin/env sh
# What `make fuzz-smoke` and `make fuzz-long` need besides the Rust toolchain: cargo-fuzz (libFuzzer's cargo
# front end), built from crates.io. Idempotent: does nothing when `cargo fuzz` already runs. Nothing in
# `make test` or CI needs it. A C++ compiler is needed too (libfuzzer-sys builds libFuzzer from source).
set -eu

CARGO="${CARGO:-cargo}"

if "$CARGO" fuzz --version >/dev/null 2>&1; then
    exit 0
fi

echo "install-fuzz-deps: installing cargo-fuzz (one time, a few minutes)" >&2
"$CARGO" install cargo-fuzz --locked
