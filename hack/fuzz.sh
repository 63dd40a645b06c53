#!/usr/bin/env bash
# Fuzzes berth's parsers of hostile input with cargo-fuzz (libFuzzer), each target
# for a bounded time, starting from the regression corpus in fuzz/corpus/<target>
# (inputs that reach new code are added there). A crash stops the run and leaves
# its input in fuzz/artifacts/<target>/; fix it and add the input to the corpus.
#
#   hack/fuzz.sh [--seconds N] [TARGET...]   N seconds per target (default 60)
#   hack/fuzz.sh --corpus-only               run each target over its corpus once
#                                            (the regression check hack/test.sh runs)
# Needs the nightly toolchain (rustup) and cargo-fuzz, installed here if missing.
# Prints executions per second and run time per target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT_DIR/fuzz"

seconds=60
corpus_only=false
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --corpus-only) corpus_only=true; shift ;;
        *) targets+=("$1"); shift ;;
    esac
done
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)

log "building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build 2>&1 | grep -E "^(error|warning: unused)" || true
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    # Each run gets a TMPDIR of its own: layer_unpack checks nothing lands beside
    # its sandbox there.
    tmp=$(mktemp -d /tmp/berth-fuzz-XXXXXX)
    out=$(mktemp)
    if $corpus_only; then
        args=(-runs=0)
    else
        args=(-max_total_time="$seconds")
    fi
    log "fuzzing $t"
    if ! TMPDIR="$tmp" cargo +nightly fuzz run "$t" "corpus/$t" -- \
        "${args[@]}" -print_final_stats=1 -rss_limit_mb=4096 >"$out" 2>&1; then
        tail -40 "$out"
        rm -rf "$tmp" "$out"
        die "$t: a crash or a failed check (input under fuzz/artifacts/$t/)"
    fi
    rm -rf "$tmp"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out")
    time=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out")
    cov=$(grep -o 'cov: [0-9]*' "$out" | tail -1 | cut -d' ' -f2)
    summary+=("$(printf '%-16s %10s runs %8s exec/s %6s s  coverage %s  corpus %s' \
        "$t" "${execs:-?}" "${rate:-?}" "${time:-?}" "${cov:-?}" "$(ls "corpus/$t" | wc -l)")")
    rm -f "$out"
done
log "fuzzing done"
printf '%s\n' "${summary[@]}"
