# Shared by scripts/demo.sh and scripts/bench-redis.sh (sourced, not run): free loopback
# ports, background processes stopped on exit, waiting for a Redis to answer.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { until redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.05; done; }
