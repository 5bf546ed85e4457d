#!/usr/bin/env bash
# The main job, for now: write a sample log with the real durable log (8 concurrent
# writers appending Redis HSETs of 384-dim embeddings, rolled into sealed segments), then
# inspect and verify it, show verify catching one flipped byte, ship the log to a store
# (a local directory) and list and verify what the store holds.
# Usage: scripts/demo-log.sh [DIR]   (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$(mktemp -d)/vecwal-demo}

echo "== building (release)"
cargo build --release --quiet --bin vecwal --example sample_log
vecwal=target/release/vecwal

echo "== writing a sample log into $dir"
target/release/examples/sample_log "$dir" 20000

echo
echo "== vecwal inspect $dir --limit 5"
"$vecwal" inspect "$dir" --limit 5
echo
echo "== vecwal inspect $dir --from-lsn 20000"
"$vecwal" inspect "$dir" --from-lsn 20000
echo
echo "== vecwal verify $dir"
"$vecwal" verify "$dir"

echo
echo "== one flipped byte in a copy of the first sealed segment"
seg=$(ls "$dir"/sealed/*.seg | head -1)
copy="$dir/damaged.seg"
cp "$seg" "$copy"
size=$(stat -c %s "$copy")
printf '\xff' | dd of="$copy" bs=1 seek=$((size / 2)) conv=notrunc status=none
if "$vecwal" verify "$copy"; then
    echo "demo failed: verify did not notice the damage" >&2
    exit 1
else
    echo "(verify exited $?: the damage was found and located)"
fi
rm -f "$copy"

store="$dir-store"
echo
echo "== vecwal ship --data-dir $dir --store $store   (the embedded default: a local directory)"
"$vecwal" ship --data-dir "$dir" --store "$store"
echo
echo "== vecwal ls --store $store"
"$vecwal" ls --store "$store"
echo "== vecwal verify --store $store"
"$vecwal" verify --store "$store"
echo
echo "done: the sample log is in $dir, its shipped copy in $store"
