#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 45) and prints, per target, the inputs
# run and the coverage reached (libFuzzer's edges `cov` and features `ft`).
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]
#
# Corpora start from seeds: the format's golden files (wal-format/testdata) for the segment
# targets, and for the capture parsers a few real requests (RESP commands and replies,
# Qdrant REST paths and bodies, gRPC messages). Under cargo-fuzz the format's CRC checks
# are skipped (`cfg(fuzzing)`, wal-format/src/lib.rs), so mutations get past them.
# Installs cargo-fuzz from crates.io when missing; needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-45}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame open_segment sealed_segment operation resp qdrant_rest qdrant_grpc)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1 # cargo-fuzz's sanitizer flags on a stable toolchain

corpus=fuzz/corpus
seed() { # seed TARGET NAME BYTES…(printf format)
    mkdir -p "$corpus/$1"
    printf "$3" >"$corpus/$1/seed-$2"
}
for t in frame open_segment sealed_segment operation; do
    mkdir -p "$corpus/$t"
    for f in wal-format/testdata/*; do
        case "$f" in *.expected) continue ;; esac
        cp "$f" "$corpus/$t/golden-$(basename "$f")"
    done
done
seed resp set '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n'
seed resp inline 'PING hello\r\n'
seed resp pipeline '*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'
seed resp reply '*2\r\n$1\r\na\r\n%%1\r\n+k\r\n:1\r\n'
seed resp resp3 '|1\r\n+ttl\r\n:3\r\n~2\r\n,1.5\r\n#t\r\n'
seed qdrant_rest upsert '\002/collections/docs/points\n{"points":[{"id":1,"vector":[0.1,0.2],"payload":{"a":1}}]}'
seed qdrant_rest delete '\001/collections/docs/points/delete\n{"points":[1,"5c56c793-69f3-4fbf-87e6-c4bf54c28c26"]}'
seed qdrant_rest filter '\001/collections/docs/points/delete\n{"filter":{"must":[{"key":"a","match":{"value":1}}]}}'
seed qdrant_rest create '\002/collections/docs\n{"vectors":{"size":4,"distance":"Cosine"}}'
seed qdrant_rest alias '\001/collections/aliases\n{"actions":[{"create_alias":{"collection_name":"docs","alias_name":"d"}}]}'
seed qdrant_grpc upsert '\001\012\004docs\032\006\012\002\010\001\042\000'
seed qdrant_grpc create '\002\012\004docs\020\001'

printf '%-16s %12s %8s %8s\n' target runs cov ft
for t in "${targets[@]}"; do
    log=$(mktemp)
    (cd fuzz && cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" \
        -print_final_stats=1) >"$log" 2>&1 || {
        tail -40 "$log"
        echo "fuzz target $t FAILED (log above)" >&2
        exit 1
    }
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    last=$(grep -E '#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo '?')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo '?')
    printf '%-16s %12s %8s %8s\n' "$t" "$runs" "$cov" "$ft"
    rm -f "$log"
done
