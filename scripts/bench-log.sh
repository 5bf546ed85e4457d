#!/usr/bin/env bash
# Log benchmark with its anchors, all in one run on the same disk:
#   1. the disk's physical limits: sequential write (dd, 1 MiB blocks, fdatasync at the end)
#      and synchronous 4 KiB writes (dd oflag=dsync: one fsync per write);
#   2. vecwal's append throughput per fsync policy, record size and concurrency, and the
#      compression ratio of sealed segments (cargo bench --bench log_append);
#   3. zstd -b on the very bytes vecwal compressed (the frames of the 384-dim run).
# Usage: scripts/bench-log.sh [DIR] [SECONDS_PER_POINT]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$(mktemp -d)}
secs=${2:-3}
mkdir -p "$dir"
command -v zstd >/dev/null || { echo "installing zstd (the CLI) for the anchor"; apt-get install -y zstd >/dev/null; }

echo "### Machine anchors (same disk: $dir)"
echo
echo '```'
dd if=/dev/zero of="$dir/dd.seq" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1 | sed 's/^/sequential write, 1 MiB blocks + fdatasync: /'
dd if=/dev/zero of="$dir/dd.sync" bs=4k count=2000 oflag=dsync 2>&1 | tail -1 | sed 's/^/4 KiB writes, each synchronous (O_DSYNC): /'
rm -f "$dir/dd.seq" "$dir/dd.sync"
echo '```'
echo

cargo bench --quiet --bench log_append -- --seconds "$secs" --dir "$dir"

echo
echo '```'
echo "zstd -b3 on the same frames (single thread):"
for level in 3 1; do
    # zstd redraws its progress line with CRs; keep the last full result.
    printf 'level %s: ' "$level"
    zstd -b"$level" -i3 "$dir/vectors.frames" 2>&1 | tr '\r' '\n' | grep 'MB/s,' | tail -1 | sed 's/^ *[|/=\\-]*-//'
done
echo '```'
