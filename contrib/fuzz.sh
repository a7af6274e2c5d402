#!/usr/bin/env bash
# Bounded fuzzing of the parsers that read untrusted input (fuzz/): every
# target runs from a corpus seeded from the fixtures, for a fixed time, with
# a per-input timeout and a memory limit; a panic, a hang or a memory blow-up
# fails the run and leaves the input in fuzz/artifacts/<target>/.
#
#   contrib/fuzz.sh                    # every target, 60 s each
#   STREAMFS_FUZZ_SECONDS=600 contrib/fuzz.sh filter products
#
# Works on the stable toolchain: no sanitizer (-s none) needs no -Z flag.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`), a C++ compiler
# (libFuzzer is built from source) and python3 (seeding).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${STREAMFS_FUZZ_SECONDS:-60}"
fixtures="${STREAMFS_FIXTURES:-$(cd ../.. && pwd)/shared/fixtures}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(products filter path_template cleartext)
build=(-s none --codegen-units 16)

cargo fuzz build "${build[@]}"
rm -rf corpus
python3 seed.py "$fixtures" corpus
export STREAMFS_FUZZ_KEYRING="$fixtures/simplestreams/signed-minimal/test-keyring.gpg"

mkdir -p artifacts
failed=()
summary=()
for t in "${targets[@]}"; do
    log="artifacts/$t.log"
    echo "fuzzing $t for ${seconds}s"
    if cargo fuzz run "${build[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=262144 -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
        tail -n 40 "$log"
        ls -l "artifacts/$t" 2>/dev/null || true
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    corpus_n=$(find "corpus/$t" -type f | wc -l)
    summary+=("$(printf 'fuzz %-14s %-6s %10s executions in %ss, coverage %s edges, corpus %s' \
        "$t" "$status" "${runs:-?}" "$seconds" "${cov:-?}" "$corpus_n")")
done
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found failures in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
