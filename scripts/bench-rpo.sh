#!/usr/bin/env bash
# RPO, measured: the primary host lost while writes run.
#
# For each ship interval: a Redis, `vecwal proxy redis --ship-interval IV` in front, and one
# client writing `SET rpo:N <its clock>` through the proxy at a steady rate, noting each
# acknowledged write. After a while the proxy is killed with SIGKILL and its data directory
# deleted (the host is gone: only the store is left); the store is restored into a fresh
# Redis and compared with what the client saw acknowledged. RPO = the time of the last
# acknowledged write minus the time of the last restored one (both by the client's clock).
# Kills land at a random point of the ship cycle: several runs per interval.
#
# Usage: scripts/bench-rpo.sh [RATE] [RUNS_1S] [RUNS_60S]   (default 200 writes/s, 5 and 2 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-200}
runs_1s=${2:-5}
runs_60s=${3:-2}
eval "$(./scripts/services.sh | grep '^export')"
cargo build --release --quiet --bin vecwal
vecwal=$(pwd)/target/release/vecwal
source scripts/redis-lib.sh
work=$(mktemp -d)
trap 'cleanup; rm -rf "$work"' EXIT


one_run() { # interval seconds-before-kill run-name
    local iv=$1 secs=$2 name=$3 rp pp fp
    rp=$(free_port); pp=$(free_port); fp=$(free_port)
    start_redis "$work" "$name-primary" "$rp"
    "$vecwal" proxy redis --listen "127.0.0.1:$pp" --upstream "redis://127.0.0.1:$rp" \
        --data-dir "$work/$name/data" --store "$work/$name/store" --ship-interval "$iv" \
        >"$work/$name.out" 2>"$work/$name.log" &
    local proxy=$!
    pids+=($proxy)
    wait_line "$work/$name.out" "listening on" 60 "$proxy" "$work/$name.log"
    python3 scripts/bench_rpo.py write "$pp" "$rate" "$work/$name.acked" &
    local writer=$!
    sleep "$secs"
    kill -KILL "$proxy"
    wait "$proxy" 2>/dev/null || true # (bash would report the kill)
    wait "$writer" || true
    rm -rf "$work/$name/data" # the host is lost: only the store is left
    start_redis "$work" "$name-restored" "$fp"
    "$vecwal" restore redis --store "$work/$name/store" --target "redis://127.0.0.1:$fp" \
        >"$work/$name.restore" 2>&1 || { tail -5 "$work/$name.restore" >&2; return 1; }
    python3 scripts/bench_rpo.py compare "$fp" "$work/$name.acked" "$iv" "$secs"
}

echo "interval,killed_after_s,acked,restored,acked_missing,rpo_s"
for i in $(seq "$runs_1s"); do
    # 6 to 10 s into the run: past the start, at a random point of the 1 s cycle.
    one_run 1s "$(python3 -c 'import random; print(round(random.uniform(6, 10), 2))')" "iv1-$i"
done
for i in $(seq "$runs_60s"); do
    # 70 to 130 s: past the first 60 s cycle, at a random point of the second.
    one_run 60s "$(python3 -c 'import random; print(round(random.uniform(70, 130), 2))')" "iv60-$i"
done
