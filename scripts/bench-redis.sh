#!/usr/bin/env bash
# Redis proxy and replay benchmarks with their anchors, all in one run:
#   redis-benchmark (Debian redis-tools) SET and HSET with 1 KiB values, 50 clients,
#   pipeline 1 and 16: direct to Redis, through `vecwal proxy redis` with fsync always and
#   everysec, and through twemproxy (Debian nutcracker, which logs nothing);
#   replay: `vecwal replay` of the logged SETs into an empty Redis against `redis-cli --pipe`
#   of the same commands; the proxy's peak memory with 50 to 1,000 client connections.
#   Beside req/s: the CPU time (utime+stime from /proc/PID/stat) the
#   proxy process spent per request, and Redis's own (the same for every target: the anchor).
# Usage: scripts/bench-redis.sh [WORK_DIR] [REQUESTS]   (about 3 minutes at the default)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
n=${2:-200000}
mkdir -p "$work"
if ! command -v redis-benchmark >/dev/null || ! command -v nutcracker >/dev/null; then
    echo "installing redis-tools and nutcracker (Debian)" >&2
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0)
    [ "$(id -u)" = 0 ] || apt=(sudo "${apt[@]}")
    "${apt[@]}" install -y --no-install-recommends redis-tools nutcracker >&2 ||
        { "${apt[@]}" update >&2 && "${apt[@]}" install -y --no-install-recommends redis-tools nutcracker >&2; }
fi
eval "$(./scripts/services.sh | grep '^export')"
cargo build --release --quiet --bin vecwal
vecwal=$(pwd)/target/release/vecwal
source scripts/redis-lib.sh

redis_port=$(free_port)
start_redis "$work" redis "$redis_port"
redis_pid=$redis_started_pid

twem_port=$(free_port)
cat >"$work/twem.yml" <<YML
bench:
  listen: 127.0.0.1:$twem_port
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:$redis_port:1
YML
nutcracker -c "$work/twem.yml" -o "$work/twem.log" -s "$(free_port)" &
pids+=($!); twem_pid=$!
wait_port "$twem_port"

start_proxy() { # name fsync; sets $port and $proxy_pid
    port=$(free_port)
    rm -rf "$work/$1"
    "$vecwal" proxy redis --listen "127.0.0.1:$port" --upstream "redis://127.0.0.1:$redis_port" \
        --data-dir "$work/$1/data" --store "$work/$1/store" --fsync "$2" --ship-interval 5s \
        >"$work/$1.out" 2>"$work/$1.log" &
    proxy_pid=$!
    pids+=($proxy_pid)
    wait_line "$work/$1.out" "listening on" 60 "$proxy_pid" "$work/$1.log"
}
stop_proxy() { kill -TERM "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; }

# CPU seconds a process has used so far (utime + stime; fields 14 and 15 of /proc/PID/stat,
# counted after the command name, which is in parentheses and may hold spaces).
tck=$(getconf CLK_TCK)
cpu() { sed 's/^.*) //' "/proc/$1/stat" | awk -v t="$tck" '{ printf "%.3f", ($12 + $13) / t }'; }

echo "target,test,pipeline,rps,avg_ms,p50_ms,p99_ms,proxy_cpu_us_per_req,redis_cpu_us_per_req"
# One vecwal proxy at a time, and none while the anchors run: a proxy follows Redis as a
# replica, so it would log (and spend CPU on) every other target's writes too.
for pipeline in 1 16; do
    for name in direct twemproxy vecwal-always vecwal-everysec; do
        case $name in
            direct) port=$redis_port; pid=- ;;
            twemproxy) port=$twem_port; pid=$twem_pid ;;
            vecwal-*) start_proxy "${name#vecwal-}" "${name#vecwal-}"; pid=$proxy_pid ;;
        esac
        for t in set hset; do
            redis-cli -p "$redis_port" flushall >/dev/null
            p0=$([ "$pid" = - ] || cpu "$pid"); r0=$(cpu "$redis_pid")
            row=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$t" -d 1024 -c 50 -P "$pipeline" \
                -n "$n" -r 100000 -q --csv 2>/dev/null | grep -v '^"test"')
            p1=$([ "$pid" = - ] || cpu "$pid"); r1=$(cpu "$redis_pid")
            python3 - "$name" "$pipeline" "$n" "$row" "${p0:--}" "${p1:--}" "$r0" "$r1" <<'PY'
import csv, sys
name, pipeline, n, row, p0, p1, r0, r1 = sys.argv[1:]
# test, rps, avg, min, p50, p95, p99, max
row = next(csv.reader([row]))
per = lambda a, b: f"{(float(b) - float(a)) * 1e6 / int(n):.1f}"
proxy = "-" if p0 == "-" else per(p0, p1)
print(f"{name},{row[0].split()[0]},{pipeline},{float(row[1]):.0f},{row[2]},{row[4]},{row[6]},"
      f"{proxy},{per(r0, r1)}")
PY
        done
        case $name in vecwal-*) stop_proxy ;; esac
    done
done

# Memory: peak RSS (VmHWM) of an everysec proxy, a fresh one per point on an emptied
# Redis (a proxy's first full sync holds the RDB in memory: that would be the peak), while
# redis-benchmark's SETs (1 KiB, pipeline 1) run flat out from 50, 250 and 1,000 client
# connections (which share one upstream connection; with --shared-connections 0 each would
# have its own, and `ulimit -n` would need to be above 2,100).
echo "memory,clients,rps,proxy_peak_rss_mb"
for clients in 50 250 1000; do
    redis-cli -p "$redis_port" flushall >/dev/null
    start_proxy memory everysec
    row=$(redis-benchmark -h 127.0.0.1 -p "$port" -t set -d 1024 -c "$clients" -P 1 \
        -n "$n" -r 100000 -q --csv 2>/dev/null | grep -v '^"test"')
    hwm=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$proxy_pid/status")
    stop_proxy
    python3 -c 'import csv, sys; r = next(csv.reader([sys.argv[1]])); print(f"memory,{sys.argv[2]},{float(r[1]):.0f},{sys.argv[3]}")' "$row" "$clients" "$hwm"
done
# Replay: what the always-proxy logged at pipeline 16 (its SETs and HSETs), into an empty
# Redis, against redis-cli --pipe of the same commands.
replay_port=$(free_port)
start_redis "$work" replay "$replay_port"
"$vecwal" replay --store "$work/always/store" --from -1h --target "127.0.0.1:$replay_port" --dry-run 2>/dev/null |
    python3 scripts/replay-to-resp.py >"$work/replay.resp"
cmds=$(grep -c '^\*' "$work/replay.resp" || true)
redis-cli -p "$replay_port" flushall >/dev/null
t0=$(date +%s.%N); redis-cli -p "$replay_port" --pipe <"$work/replay.resp" >/dev/null; t1=$(date +%s.%N)
redis-cli -p "$replay_port" flushall >/dev/null
t2=$(date +%s.%N); "$vecwal" replay --store "$work/always/store" --from -1h --target "127.0.0.1:$replay_port" >"$work/replay.out"; t3=$(date +%s.%N)
python3 - "$cmds" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
n, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:])
pipe, vw = n / (t1 - t0), n / (t3 - t2)
print(f"replay,{n} commands,redis-cli --pipe {pipe:.0f}/s,vecwal replay {vw:.0f}/s (incl. reading the store),ratio {vw/pipe:.2f}")
PY
