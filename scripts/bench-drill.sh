#!/usr/bin/env bash
# RTO, measured by the drill itself: a Redis 8.2 with RediSearch and RedisJSON behind
# `vecwal proxy redis` (defaults but --ship-interval 1s, so the store catches up within the
# run), N hashes of a 384-dim f32 vector and a tag written through it in pipelines, half
# before an on-demand base snapshot and half after; then `vecwal drill redis --source` into
# a scratch server, whose JSON report gives the recovery time by phase and whose checks
# compare every key with the source. Prints the report's figures and the replay rate.
#
# Usage: scripts/bench-drill.sh [N]   (default 200000 hashes, about 330 MB of log)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
eval "$(./scripts/services.sh | grep '^export')"
cargo build --release --quiet --bin vecwal
vecwal=$(pwd)/target/release/vecwal
source scripts/redis-lib.sh
work=$(mktemp -d)
trap 'cleanup; rm -rf "$work"' EXIT

rp=$(free_port)
pp=$(free_port)
start_redis "$work" redis "$rp" --loadmodule "$REDISEARCH_SO" --loadmodule "$REJSON_SO"
"$vecwal" proxy redis --listen "127.0.0.1:$pp" --upstream "redis://127.0.0.1:$rp" \
    --data-dir "$work/data" --store "$work/store" --ship-interval 1s \
    >"$work/proxy.out" 2>"$work/proxy.log" &
proxy=$!
pids+=($proxy)
wait_line "$work/proxy.out" "listening on" 60 "$proxy" "$work/proxy.log"

write() { # FIRST COUNT
    python3 - "$pp" "$1" "$2" <<'PY'
import random, struct, sys
sys.path.insert(0, "scripts")
from resp import Client
port, first, count = map(int, sys.argv[1:])
c, rng = Client(port, timeout=300), random.Random(first)
for start in range(first, first + count, 500):
    batch = []
    for i in range(start, min(start + 500, first + count)):
        vec = struct.pack("<384f", *(rng.random() for _ in range(384)))
        batch.append(("HSET", f"doc:{i}", "tag", f"t{i % 50}", "vec", vec))
    c.pipeline(batch)
PY
}
start=$(date +%s.%N)
write 0 $((n / 2))
python3 -c "
import sys; sys.path.insert(0, 'scripts')
from resp import Client
print(Client($pp, timeout=600).call('VECWAL.SNAPSHOT'))" >"$work/snapshot.out"
write $((n / 2)) $((n - n / 2))
echo "wrote $n hashes in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s; $(cat "$work/snapshot.out")"

"$vecwal" drill redis --store "$work/store" --redis-server "$REDIS_SERVER" \
    --loadmodule "$REDISEARCH_SO" --loadmodule "$REJSON_SO" \
    --source "redis://127.0.0.1:$rp" --report "$work/drill.json" --no-record \
    >"$work/drill.out" 2>"$work/drill.log" || true
cat "$work/drill.out"
python3 - "$work/drill.json" "$work/store" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
segs = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sys.argv[2])
           for f in fs if f.endswith(".seg"))
rto = r["rto"]
print(f"verdict {r['verdict']}; records replayed {r['records_applied']}, "
      f"{segs / 1e6:.0f} MB of segments in the store")
for k in ("plan_s", "snapshot_download_s", "snapshot_load_s", "replay_s", "total_s"):
    print(f"  {k:22} {rto[k]:8.2f}")
print(f"  replay rate {r['records_applied'] / max(rto['replay_s'], 1e-9):,.0f} records/s")
PY
