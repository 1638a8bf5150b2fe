#!/usr/bin/env bash
# Runs toolgate's fuzz targets (fuzz/, docs/fuzzing.md) one after another, each for SECONDS, and prints one
# summary line per target (executions, executions per second, coverage, crashes).
#
#   scripts/fuzz.sh SECONDS [TARGET...]   run each target (all when none is named) for SECONDS
#   scripts/fuzz.sh merge [TARGET...]     fold the inputs runs found that add coverage into fuzz/corpus/
#
# Environment: FUZZ_SANITIZER (address or none; default: address when it builds here, else none), FUZZ_NICE
# (a nice level for the runs, e.g. 19 for long runs in the background). One process per target, one target
# at a time, so each line's figures are that target's own.
#
# Stable Rust only: RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo-fuzz passes. Inputs a run finds go
# to fuzz/target/corpus/<target> (not committed; `make fuzz-merge` folds the ones that add coverage into
# fuzz/corpus/<target>); crashes go to fuzz/artifacts/<target>/ and make this script exit 1 at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:?usage: scripts/fuzz.sh SECONDS|merge [TARGET...]}"
shift
export RUSTC_BOOTSTRAP=1
CARGO="${CARGO:-cargo}"
./scripts/install-fuzz-deps.sh

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <("$CARGO" fuzz list)
fi

NICE=()
if [ -n "${FUZZ_NICE:-}" ]; then
    NICE=(nice -n "$FUZZ_NICE")
fi

# AddressSanitizer when its runtime is there (rustup ships it for x86_64 Linux); otherwise libFuzzer alone,
# which still finds panics, failed properties, hangs and memory blow-ups.
SANITIZER="${FUZZ_SANITIZER:-}"
if [ -z "$SANITIZER" ]; then
    if "${NICE[@]}" "$CARGO" fuzz build -s address >/dev/null 2>&1; then
        SANITIZER=address
    else
        echo "fuzz: the address sanitizer does not build here; running with -s none" >&2
        SANITIZER=none
    fi
fi
"${NICE[@]}" "$CARGO" fuzz build -s "$SANITIZER"

if [ "$SECONDS_PER_TARGET" = merge ]; then
    # libFuzzer's merge keeps, in the first folder, the smallest set of inputs that covers what all do.
    for target in "${TARGETS[@]}"; do
        mkdir -p "fuzz/target/corpus/$target"
        "${NICE[@]}" "$CARGO" fuzz run -s "$SANITIZER" "$target" "fuzz/corpus/$target" \
            "fuzz/target/corpus/$target" -- -merge=1 -max_len=4096
    done
    du -sh fuzz/corpus
    exit 0
fi

LOGS=fuzz/target/logs
mkdir -p "$LOGS"
SUMMARY="$LOGS/summary-$(date -u +%Y%m%dT%H%M%SZ).txt"
printf '%-14s %6s %12s %9s %7s %7s %7s %s\n' target seconds executions exec/s cov ft corpus result | tee "$SUMMARY"
FAILED=()
for target in "${TARGETS[@]}"; do
    work="fuzz/target/corpus/$target"
    mkdir -p "$work" "fuzz/artifacts/$target"
    log="$LOGS/$target.log"
    status=ok
    # The first corpus folder receives new inputs; the committed seeds are only read.
    if ! "${NICE[@]}" "$CARGO" fuzz run -s "$SANITIZER" "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -dict=fuzz/fuzz.dict -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        status="CRASH (see $log, fuzz/artifacts/$target/)"
        FAILED+=("$target")
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-14s %6s %12s %9s %7s %7s %7s %s\n' "$target" "$SECONDS_PER_TARGET" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$status" | tee -a "$SUMMARY"
done
echo "fuzz: sanitizer $SANITIZER; summary in $SUMMARY"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "fuzz: failures in ${FAILED[*]}" >&2
    exit 1
fi
