# Shared by scripts/demo.sh and the Redis benchmark and conformance scripts (sourced, not
# run): free loopback ports, background processes stopped on exit, bounded waits that say
# what they waited for. Needs only python3 (scripts/resp.py), no redis-cli.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
# wait_port PORT [SECONDS]: until a Redis (or the proxy) on PORT answers PING.
wait_port() { python3 "$(dirname "${BASH_SOURCE[0]}")/resp.py" wait "$1" "${2:-30}"; }
# wait_line FILE TEXT SECONDS [PID LOG]: until FILE holds TEXT; fails early if PID exits
# (showing the end of LOG), and after SECONDS.
wait_line() {
    local file=$1 text=$2 seconds=$3 pid=${4:-} log=${5:-} waited=0
    until grep -q "$text" "$file" 2>/dev/null; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            echo "the process writing $file exited before printing '$text'" >&2
            [ -z "$log" ] || tail -20 "$log" >&2
            return 1
        fi
        if [ "$waited" -ge $((seconds * 20)) ]; then
            echo "no '$text' in $file after $seconds s" >&2
            [ -z "$log" ] || tail -20 "$log" >&2
            return 1
        fi
        sleep 0.05
        waited=$((waited + 1))
    done
}
# wait_http URL [SECONDS]: until URL answers 2xx (a Qdrant's /readyz, say).
wait_http() {
    python3 - "$1" "${2:-60}" <<'PY'
import sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
deadline, last = time.monotonic() + seconds, None
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2):
            sys.exit(0)
    except Exception as e:
        last = e
    time.sleep(0.05)
sys.exit(f"{url} did not answer within {seconds:g} s ({last})")
PY
}
# start_redis DIR NAME PORT [ARG...]: a redis-server on 127.0.0.1:PORT with its RDB and log at
# DIR/NAME.rdb and DIR/NAME.log, no save points (nothing here saves on a schedule) and the
# ARGs; waits until it answers PING. Its PID is in $redis_started_pid.
start_redis() {
    local dir=$1 name=$2 port=$3
    shift 3
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --dir "$dir" --dbfilename "$name.rdb" \
        --save "" --logfile "$dir/$name.log" "$@" &
    redis_started_pid=$!
    pids+=($!)
    wait_port "$port"
}
