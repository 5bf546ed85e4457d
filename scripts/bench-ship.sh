#!/usr/bin/env bash
# Shipping benchmark with its anchors, all in one run:
#   upload throughput of sealed segments to a local-dir store and to SeaweedFS (S3), against
#   a plain copy of the same bytes (cp + sync; boto3 put_object) measured in the same run;
#   the achieved RPO (append → confirmed in the store) at 1 s and 60 s intervals.
# Usage: scripts/bench-ship.sh [WORK_DIR]   (the 60 s RPO run takes about 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
mkdir -p "$work"
eval "$(./scripts/services.sh)"
py=.services/venv/bin/python
"$py" -c 'import boto3' 2>/dev/null || .services/venv/bin/pip install --quiet boto3 >&2

# SeaweedFS on free loopback ports (gRPC on each + 10000).
read -r master volume filer s3 < <("$py" - <<'PY'
import socket, random
ports = []
while len(ports) < 4:
    p = random.randint(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        ports.append(p)
    except OSError:
        pass
print(*ports)
PY
)
mkdir -p "$work/weed"
echo '{"identities":[{"name":"bench","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret123"}],"actions":["Admin","Read","Write","List"]}]}' > "$work/s3.json"
WEED_MASTER_VOLUME_GROWTH_COPY_1=1 "$WEED_BIN" -logtostderr=true server -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -dir="$work/weed" -master.port="$master" -master.volumeSizeLimitMB=1024 -master.telemetry=false \
    -master.electionTimeout=1s -volume.port="$volume" -volume.max=100 -volume.preStopSeconds=0 \
    -filer -filer.port="$filer" -s3 -s3.port="$s3" -s3.config="$work/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 > "$work/weed.log" 2>&1 &
weed_pid=$!
trap 'kill -9 $weed_pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    if curl -s -o /dev/null "http://127.0.0.1:$s3/" && curl -s "http://127.0.0.1:$master/dir/status" | grep -q ":$volume"; then break; fi
    sleep 0.1
done
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret123 AWS_REGION=us-east-1
export VECWAL_BENCH_S3_ENDPOINT="http://127.0.0.1:$s3"

cargo bench --quiet --bench ship -- make-segments "$work/segs" 8 >/dev/null
bytes=$(du -cb "$work"/segs/*.seg | tail -1 | cut -f1)

echo "### Upload throughput (8 sealed segments, $((bytes / 1000000)) MB; three rounds, each anchor beside vecwal)"
echo
echo "| round | what | objects | size | time | throughput |"
echo "|---|---|---:|---:|---:|---:|"
for round in 1 2 3; do
    rm -rf "$work/copy"
    t0=$(date +%s.%N); cp -r "$work/segs" "$work/copy" && sync; t1=$(date +%s.%N)
    awk -v r="$round" -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "| %d | anchor: cp + sync to the same disk | 8 | %.1f MB | %.2f s | %.0f MB/s |\n", r, b/1e6, z-a, b/1e6/(z-a) }'
    "$py" - "$work/segs" "$VECWAL_BENCH_S3_ENDPOINT" "$bytes" "$round" <<'PY'
import sys, os, time, boto3
d, ep, total, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
try:
    s3.create_bucket(Bucket="vecwal-bench")
except Exception:
    pass
files = sorted(os.listdir(d))
t = time.time()
for f in files:
    with open(os.path.join(d, f), "rb") as fh:
        s3.put_object(Bucket="vecwal-bench", Key=f"anchor{rnd}/" + f, Body=fh.read())
dt = time.time() - t
print(f"| {rnd} | anchor: boto3 put_object to SeaweedFS (no verification) | {len(files)} | {total/1e6:.1f} MB | {dt:.2f} s | {total/1e6/dt:.0f} MB/s |")
PY
    cargo bench --quiet --bench ship -- upload "$work/segs" | sed "s/^|/| $round |/"
done

echo
echo "### Achieved RPO (append → confirmed in the store)"
echo
echo "| interval | store | load | records | p50 | p99 | max |"
echo "|---|---|---|---:|---:|---:|---:|"
cargo bench --quiet --bench ship -- rpo 1 20 500
cargo bench --quiet --bench ship -- rpo 60 150 500
