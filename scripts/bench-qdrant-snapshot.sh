#!/usr/bin/env bash
# The snapshot of a big Qdrant collection, measured: a collection of POINTS points (default
# 500,000 of 128 dims) made directly on Qdrant; then
#   1. the proxy's start (it snapshots every collection before it serves a client): how long
#      clients cannot connect;
#   2. an on-demand snapshot while one writer upserts through the proxy and another writes to
#      Qdrant directly (the anchor: what Qdrant itself makes writes wait while it makes a
#      snapshot): the longest write of each during the snapshot;
#   3. a restore of the collection from that snapshot and the writes after it, compared
#      point by point with what Qdrant holds.
# Usage: scripts/bench-qdrant-snapshot.sh [POINTS] [DIM]
set -euo pipefail
cd "$(dirname "$0")/.."
points=${1:-500000}
dim=${2:-128}
eval "$(./scripts/services.sh | grep '^export')"
[ -n "${QDRANT_BIN:-}" ] || { echo "no Qdrant server (../shared/qdrant or QDRANT_BIN)" >&2; exit 1; }
cargo build --release --quiet --bin vecwal
vecwal=$(pwd)/target/release/vecwal
source scripts/redis-lib.sh
work=$(mktemp -d); trap 'cleanup; rm -rf "$work"' EXIT
py() { "$VECWAL_PYTHON" scripts/bench-qdrant-snapshot.py "$@"; }

q_http=$(free_port); q_grpc=$(free_port)
(cd "$work" && QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$q_http \
    QDRANT__SERVICE__GRPC_PORT=$q_grpc QDRANT__STORAGE__STORAGE_PATH=$work/storage \
    QDRANT__STORAGE__SNAPSHOTS_PATH=$work/snapshots QDRANT__TELEMETRY_DISABLED=true \
    QDRANT__LOG_LEVEL=WARN exec "$QDRANT_BIN" --disable-telemetry >"$work/qdrant.log" 2>&1) &
pids+=($!)
wait_http "http://127.0.0.1:$q_http/readyz" 60
py fill "$q_http" "$q_grpc" "$points" "$dim"
du -sh "$work/storage" | sed 's/^/storage on disk: /'

p_http=$(free_port)
start=$(date +%s.%N)
"$vecwal" proxy qdrant --listen-http "127.0.0.1:$p_http" --listen-grpc none \
    --upstream-http "http://127.0.0.1:$q_http" --data-dir "$work/data" --store "$work/store" \
    --ship-interval 1s >"$work/proxy.out" 2>"$work/proxy.log" &
proxy=$!; pids+=($proxy)
wait_line "$work/proxy.out" "listening on" 1800 "$proxy" "$work/proxy.log"
echo "proxy start, until it serves clients: $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
wait_line "$work/proxy.log" "start snapshot stored" 1800 "$proxy" "$work/proxy.log"
echo "proxy start, until its start snapshot is stored: $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"

# Writes through the proxy for 60 s; an on-demand snapshot 15 s in.
py write "$p_http" 60 "$work/writes.json" &
writer=$!
py write "$q_http" 60 "$work/direct.json" 20000000 &
direct_writer=$!
sleep 15
snap_start=$(date +%s.%N)
"$vecwal" snapshot qdrant --proxy "http://127.0.0.1:$p_http" --collection big
snap_end=$(date +%s.%N)
# The restore goes to a moment after the writer stopped, so the collection as Qdrant holds
# it then is what it must equal; its base is the snapshot taken while the writer ran.
wait "$writer" "$direct_writer"
at=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
python3 - "$work/writes.json" "$work/direct.json" "$snap_start" "$snap_end" <<'PY'
import json, sys
s0, s1 = float(sys.argv[3]), float(sys.argv[4])
print(f"on-demand snapshot: {s1 - s0:.1f} s")
for name, f in (("through the proxy", sys.argv[1]), ("directly (anchor)", sys.argv[2])):
    rows = json.load(open(f))
    during = [l for t, l in rows if t + l >= s0 and t <= s1]
    before = sorted(l for t, l in rows if t + l < s0)
    print(f"writes {name}: {len(rows)} in 60 s; p50 before the snapshot {before[len(before) // 2] * 1000:.1f} ms; "
          f"longest during it {max(during) * 1000:.0f} ms")
PY
kill -TERM "$proxy"; wait "$proxy" || true
start=$(date +%s.%N)
"$vecwal" restore qdrant --store "$work/store" --collection big --at "$at" --as big_restored \
    --target "http://127.0.0.1:$q_http" --target-grpc "http://127.0.0.1:$q_grpc"
echo "restore: $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
# The anchor's writes went to Qdrant directly, around the log: left out.
py compare "$q_http" big big_restored 20000000
