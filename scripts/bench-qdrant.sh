#!/usr/bin/env bash
# Qdrant benchmarks (issue 5): upsert throughput and p99, direct and through `vecwal proxy
# qdrant`, REST and gRPC, in one run; then `vecwal restore qdrant` against a direct bulk
# upsert of the same points. Needs a Qdrant server (QDRANT_BIN or `qdrant` on PATH; see
# docs/qdrant.md) and the services venv (scripts/services.sh). VECWAL_BIN: a vecwal to
# measure instead of this checkout's release build. FSYNC: the proxies' --fsync (default
# always, the proxy's own default).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/redis-lib.sh
eval "$(./scripts/services.sh)"
qdrant=${QDRANT_BIN:-$(command -v qdrant || true)}
[ -x "$qdrant" ] || { echo "no Qdrant server: set QDRANT_BIN (docs/qdrant.md)" >&2; exit 1; }
# VECWAL_BIN runs another build instead (an A/B of two builds on the same machine).
if [ -n "${VECWAL_BIN:-}" ]; then
    vecwal=$VECWAL_BIN
else
    cargo build --release --quiet --bin vecwal
    vecwal=$(pwd)/target/release/vecwal
fi
work=$(mktemp -d); pids=(); trap 'cleanup; rm -rf "$work"' EXIT

q_http=$(free_port); q_grpc=$(free_port); p_http=$(free_port); p_grpc=$(free_port)
(cd "$work" && QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$q_http \
    QDRANT__SERVICE__GRPC_PORT=$q_grpc QDRANT__STORAGE__STORAGE_PATH=$work/storage \
    QDRANT__STORAGE__SNAPSHOTS_PATH=$work/snapshots QDRANT__TELEMETRY_DISABLED=true \
    QDRANT__LOG_LEVEL=WARN exec "$qdrant" --disable-telemetry >"$work/qdrant.log" 2>&1) &
pids+=($!)
wait_http "http://127.0.0.1:$q_http/readyz" 60
"$vecwal" proxy qdrant --listen-http "127.0.0.1:$p_http" --listen-grpc "127.0.0.1:$p_grpc" \
    --upstream-http "http://127.0.0.1:$q_http" --upstream-grpc "http://127.0.0.1:$q_grpc" \
    --data-dir "$work/data" --store "$work/store" --ship-interval 1s --fsync "${FSYNC:-always}" > "$work/proxy.out" 2>"$work/proxy.log" &
proxy=$!; pids+=($proxy)
p2_http=$(free_port); p2_grpc=$(free_port)
"$vecwal" proxy qdrant --listen-http "127.0.0.1:$p2_http" --listen-grpc "127.0.0.1:$p2_grpc" \
    --upstream-http "http://127.0.0.1:$q_http" --upstream-grpc "http://127.0.0.1:$q_grpc" \
    --data-dir "$work/data2" --store "$work/store2" --ship-interval 1s --fsync "${FSYNC:-always}" > "$work/proxy2.out" 2>"$work/proxy2.log" &
proxy2=$!; pids+=($proxy2)
wait_line "$work/proxy.out" "listening on" 60 "$proxy" "$work/proxy.log"
wait_line "$work/proxy2.out" "listening on" 60 "$proxy2" "$work/proxy2.log"

PROXY_PID=$proxy Q_HTTP=$q_http Q_GRPC=$q_grpc P_HTTP=$p_http P_GRPC=$p_grpc P2_HTTP=$p2_http P2_GRPC=$p2_grpc \
    HALF="$work/half.json" "$VECWAL_PYTHON" scripts/bench-qdrant.py
kill -TERM "$proxy" "$proxy2"; wait "$proxy" "$proxy2" || true
read -r direct points < <(python3 -c "import json;d=json.load(open('$work/half.json'));print(d['direct_bulk_pps'], d['points'])")
start=$(date +%s.%N)
"$vecwal" restore qdrant --store "$work/store2" --collection restore_src --as restored \
    --target "http://127.0.0.1:$q_http" --target-grpc "http://127.0.0.1:$q_grpc" >/dev/null
end=$(date +%s.%N)
python3 - "$direct" "$points" "$start" "$end" <<'PY'
import sys
direct, points, start, end = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
restore = points / (end - start)
print(f"restore of {points} points ({points // 100} logged batches): {restore:.0f} points/s; "
      f"direct bulk upsert of the same points: {direct:.0f} points/s; ratio {restore / direct:.2f}x")
PY
