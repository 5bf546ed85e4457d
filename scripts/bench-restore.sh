#!/usr/bin/env bash
# Restore throughput of a large log, beside the limits of the disk and the network it
# crosses: `vecwal proxy redis` (defaults but --ship-interval 1s) logs MB megabytes of SETs
# (4 KiB random hex values, redis-cli --pipe) into a local-directory store; the proxy is
# stopped (it seals and ships); then `vecwal restore redis --at now` into an empty Redis,
# timed from start to exit. Anchors, measured in the same run on the same machine:
#   disk:    reading the store's segment files with O_DIRECT (dd), the page cache bypassed;
#   network: one loopback TCP connection carrying the same number of bytes (python);
#   Redis:   `redis-cli --pipe` of the same SETs, which is as fast as Redis takes them.
# Usage: scripts/bench-restore.sh [MB]   (default 1024; about 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-1024}
if ! command -v redis-cli >/dev/null; then
    echo "installing redis-tools (Debian)" >&2
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0)
    [ "$(id -u)" = 0 ] || apt=(sudo "${apt[@]}")
    "${apt[@]}" install -y --no-install-recommends redis-tools >&2 ||
        { "${apt[@]}" update >&2 && "${apt[@]}" install -y --no-install-recommends redis-tools >&2; }
fi
eval "$(./scripts/services.sh | grep '^export')"
cargo build --release --quiet --bin vecwal
vecwal=$(pwd)/target/release/vecwal
source scripts/redis-lib.sh
work=$(mktemp -d)
trap 'cleanup; rm -rf "$work"' EXIT
now() { date +%s.%N; }

rp=$(free_port)
pp=$(free_port)
start_redis "$work" redis "$rp"
"$vecwal" proxy redis --listen "127.0.0.1:$pp" --upstream "redis://127.0.0.1:$rp" \
    --data-dir "$work/data" --store "$work/store" --ship-interval 1s \
    >"$work/proxy.out" 2>"$work/proxy.log" &
proxy=$!
pids+=($proxy)
wait_line "$work/proxy.out" "listening on" 60 "$proxy" "$work/proxy.log"
# MB megabytes of SETs of 4 KiB random hex values (zstd about halves them), as
# Redis protocol: logged through the proxy with redis-cli --pipe, and the anchors' input.
python3 - "$mb" >"$work/sets.resp" <<'PY'
import os, sys
out = sys.stdout.buffer
for i in range(int(sys.argv[1]) * 256):
    key, value = b"key:%d" % i, os.urandom(2048).hex().encode()
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
PY
t0=$(now)
redis-cli -p "$pp" --pipe <"$work/sets.resp" >"$work/load.out"
echo "logged $(tail -1 "$work/load.out") through the proxy in $(python3 -c "print(round($(now) - $t0, 1))") s"
kill -TERM "$proxy"
wait "$proxy" 2>/dev/null || true
store_bytes=$(python3 -c "
import os
print(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk('$work/store')
          for f in fs))")
resp_bytes=$(stat -c %s "$work/sets.resp")

# Restore into an empty Redis.
tp=$(free_port)
start_redis "$work" target "$tp"
t0=$(now)
"$vecwal" restore redis --store "$work/store" --target "redis://127.0.0.1:$tp" --force \
    >"$work/restore.out" 2>"$work/restore.log"
t1=$(now)
sed 's/^/  restore: /' "$work/restore.out"
keys=$(redis-cli -p "$tp" dbsize)
want=$(redis-cli -p "$rp" dbsize)
[ "$keys" = "$want" ] || { echo "restored $keys keys, the source has $want" >&2; exit 1; }

# Anchors.
disk_s=$(python3 - "$work/store" <<'PY'
import os, subprocess, sys, time
files = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs]
t = time.monotonic()
for f in files:
    subprocess.run(["dd", f"if={f}", "of=/dev/null", "bs=1M", "iflag=direct"],
                   check=True, stderr=subprocess.DEVNULL)
print(time.monotonic() - t)
PY
)
net_s=$(python3 - "$resp_bytes" <<'PY'
import socket, sys, threading, time
total = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def sink():
    c, _ = srv.accept()
    while c.recv(1 << 20):
        pass
th = threading.Thread(target=sink); th.start()
s = socket.create_connection(srv.getsockname())
chunk = b"x" * (1 << 20)
t = time.monotonic(); sent = 0
while sent < total:
    sent += s.send(chunk)
s.close(); th.join()
print(time.monotonic() - t)
PY
)
# Into a fresh Redis, as the restore's: a Redis that already held the data once loads it
# again in about half the time (its allocator keeps the memory).
ap=$(free_port)
start_redis "$work" anchor "$ap"
t2=$(now)
redis-cli -p "$ap" --pipe <"$work/sets.resp" >/dev/null
t3=$(now)
python3 - "$store_bytes" "$resp_bytes" "$t0" "$t1" "$disk_s" "$net_s" "$t2" "$t3" "$keys" <<'PY'
import sys
store_b, resp_b = map(int, sys.argv[1:3])
t0, t1, disk_s, net_s, t2, t3 = map(float, sys.argv[3:9])
keys = sys.argv[9]
mb = lambda b: b / 1e6
r = t1 - t0
print(f"log of {mb(resp_b):.0f} MB of commands, {mb(store_b):.0f} MB in the store (zstd); "
      f"{keys} keys restored and counted")
print(f"restore            {r:6.2f} s  {mb(resp_b) / r:7.0f} MB/s of commands, {mb(store_b) / r:6.0f} MB/s of store")
print(f"disk (O_DIRECT)    {disk_s:6.2f} s  {mb(store_b) / disk_s:7.0f} MB/s reading the store's files")
print(f"network (loopback) {net_s:6.2f} s  {mb(resp_b) / net_s:7.0f} MB/s, one TCP connection")
print(f"redis-cli --pipe   {t3 - t2:6.2f} s  {mb(resp_b) / (t3 - t2):7.0f} MB/s of commands into another fresh Redis")
PY
