#!/usr/bin/env bash
# Qdrant's own API tests (tests/openapi of Qdrant 1.18.3, ../shared/qdrant-tests/) as a
# conformance check of `vecwal proxy qdrant` and `vecwal restore qdrant`:
#   1. the suite against a Qdrant directly (A): pass/fail per test, the baseline;
#   2. the suite against a fresh Qdrant (B) through the proxy, with a capture shim in front
#      (scripts/qdrant_conformance_shim.py) that reads each collection from B just before the
#      suite deletes it (and, at the end, every collection never deleted);
#   3. each captured collection restored from the proxy's store into a scratch Qdrant (C) at
#      the LSN just before its delete (or the last LSN) and compared with what B held.
# Fails (exit 1) when a test passes directly but not through the proxy (unless listed in
# scripts/qdrant-conformance-known.txt with a reason) or a restored collection differs.
#
#   usage: scripts/qdrant-conformance.sh [--direct-only|--proxy-only] [-- PYTEST-ARGS...]
#     PYTEST-ARGS default to `openapi` (the whole suite); e.g. -- openapi/test_alias.py
#   env: VECWAL_BIN (default: cargo build --release), QDRANT_CONFORMANCE_OUT (results,
#     default target/qdrant-conformance), QDRANT_CONFORMANCE_TIMEOUT (whole run, s, default
#     5400), QDRANT_CONFORMANCE_JOBS (restores at once, default 2),
#     QDRANT_CONFORMANCE_LAST_ONLY=1 (restore only each collection name's last state: every
#     restore replays the name's whole history, so all states cost quadratically),
#     QDRANT_CONFORMANCE_KEEP=1 (keep the scratch directory), QDRANT_SHARED_DIR
#     (default ../shared: the Qdrant server and the suite)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# The per-run timeout: the script runs itself under timeout(1), which on expiry signals the
# whole process group (pytest, Qdrant, proxy, shim); the traps below then report and clean up.
if [ -z "${QDRANT_CONFORMANCE_TIMED:-}" ]; then
    export QDRANT_CONFORMANCE_TIMED=${QDRANT_CONFORMANCE_TIMEOUT:-5400}
    exec timeout --kill-after=60 "$QDRANT_CONFORMANCE_TIMED" "$0" "$@"
fi

mode=both
pytest_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --direct-only) mode=direct ;;
        --proxy-only) mode=proxy ;;
        --) shift; pytest_args=("$@"); break ;;
        *) echo "usage: $0 [--direct-only|--proxy-only] [-- PYTEST-ARGS...]" >&2; exit 2 ;;
    esac
    shift
done
[ ${#pytest_args[@]} -gt 0 ] || pytest_args=(openapi)

# The plugin, shim and checker are imported from scripts/: no __pycache__ left there.
export PYTHONDONTWRITEBYTECODE=1
shared=${QDRANT_SHARED_DIR:-$repo/../shared}
venv=$repo/.services/qdrant-tests-venv
out=${QDRANT_CONFORMANCE_OUT:-$repo/target/qdrant-conformance}
work=$(mktemp -d "${TMPDIR:-/tmp}/qdrant-conformance.XXXXXX")
pids=()

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait_exit "$p" "process $p" 20 || kill -KILL "$p" 2>/dev/null || true; done
    if [ -n "${QDRANT_CONFORMANCE_KEEP:-}" ]; then log "scratch kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'log "stopped by a signal (per-run timeout ${QDRANT_CONFORMANCE_TIMED}s, or interrupted)"; exit 124' TERM INT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# http METHOD URL [SECONDS]: the body of a 2xx answer on stdout, or a failure (a bare
# machine has no curl: Python's standard library does it).
http() {
    python3 -c 'import sys, urllib.request
m, u = sys.argv[1], sys.argv[2]
t = float(sys.argv[3]) if len(sys.argv) > 3 else 10
try:
    with urllib.request.urlopen(urllib.request.Request(u, method=m), timeout=t) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.exit(f"{m} {u}: {e}")' "$@"
}

# wait_until WHAT SECONDS COMMAND...: polls COMMAND; says what it gave up on.
wait_until() {
    local what=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then log "gave up after ${secs}s waiting for $what"; return 1; fi
        sleep 0.1
    done
}
wait_exit() { wait_until "$2 to exit" "$3" bash -c "! kill -0 $1"; }
forget_pid() { local p keep=(); for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; pids=("${keep[@]}"); }
# stop PID WHAT SECONDS: SIGTERM, a bounded wait, then SIGKILL.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait_exit "$1" "$2" "$3" || { log "killing $2"; kill -KILL "$1" 2>/dev/null || true; }
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

# ---- what the run needs: the Qdrant server, the suite's venv, vecwal, the suite itself
# QDRANT_BIN (as scripts/services.sh exports it) wins; else the server ../shared carries.
qdrant_bin=${QDRANT_BIN:-$("$shared/qdrant/install.sh" "$repo/.services/qdrant/qdrant")}
# The suite's own dependency list (../shared/qdrant-tests/README.md), pinned as there; the
# marker holds the list, so a changed list reinstalls and an unchanged one costs nothing.
requirements='pytest>=8.4,<9 pytest-timeout>=2.4,<3 pytest-cases>=3.9.1,<4 requests>=2.32.5,<3
schemathesis>=3.39.16,<4 retry>=0.9.2,<0.10 jsons>=1.6.3,<2 more-itertools>=10.8,<11
qdrant-client>=1.16.1,<2 pytest-xdist>=3.8.0,<4 pytest-subtests>=0.14.1,<0.15'
if [ "$(cat "$venv/.conformance-requirements" 2>/dev/null)" != "$requirements" ]; then
    log "installing the suite's requirements into $venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086  # one requirement per word
    "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements >&2
    echo "$requirements" >"$venv/.conformance-requirements"
fi
if [ -z "${VECWAL_BIN:-}" ]; then
    cargo build --release --quiet --bin vecwal
fi
vecwal_src=${VECWAL_BIN:-$repo/target/release/vecwal}
# A copy, so the whole run uses one build even if the binary is rebuilt meanwhile.
vecwal=$work/vecwal
cp "$vecwal_src" "$vecwal"
vecwal_version=$("$vecwal" --version | awk '{print $NF}')
mkdir -p "$work/suite"
tar -xJf "$shared/qdrant-tests/qdrant-openapi-tests-1.18.3.tar.xz" -C "$work/suite"
rm -rf "$out"; mkdir -p "$out"
log "vecwal: $vecwal_src (version $vecwal_version); qdrant: $qdrant_bin; results: $out; scratch: $work"

# start_qdrant LABEL: a Qdrant on free loopback ports with scratch storage; sets q_http,
# q_grpc, q_pid. Only the settings ../shared/qdrant/README.md gives; RUN_MODE as there too
# (with no config file beside it, it selects nothing).
start_qdrant() {
    local dir=$work/$1
    mkdir -p "$dir"
    q_http=$(free_port); q_grpc=$(free_port)
    (cd "$dir" && QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$q_http \
        QDRANT__SERVICE__GRPC_PORT=$q_grpc QDRANT__STORAGE__STORAGE_PATH=$dir/storage \
        QDRANT__STORAGE__SNAPSHOTS_PATH=$dir/snapshots QDRANT__TELEMETRY_DISABLED=true \
        RUN_MODE=production exec "$qdrant_bin" >"$dir/qdrant.log" 2>&1) &
    q_pid=$!; pids+=("$q_pid")
    wait_until "Qdrant $1 to answer /readyz on port $q_http" 60 http GET "http://127.0.0.1:$q_http/readyz"
    qdrant_version=$(http GET "http://127.0.0.1:$q_http/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
}

# run_suite LABEL QDRANT_HOST HTTP_PORT GRPC_PORT [SHIM_URL]: pytest as the suite's README
# runs it, plus the plugin (hard-coded ports, gRPC delete capture); JUnit XML into $out.
run_suite() {
    local label=$1 host=$2 http_port=$3 grpc_port=$4 shim=${5:-} start rc=0
    log "running the suite ($label) against $host; log: $out/$label.pytest.log"
    start=$(date +%s)
    (cd "$work/suite/tests" && QDRANT_HOST=$host HTTP_SERVER_HOST=127.0.0.1 \
        OPENAPI_FILE=$work/suite/docs/redoc/master/openapi.json PYTHONPATH=$repo/scripts \
        QDRANT_CONFORMANCE_HTTP_PORT=$http_port QDRANT_CONFORMANCE_GRPC_PORT=$grpc_port \
        QDRANT_CONFORMANCE_SHIM=$shim \
        "$venv/bin/pytest" "${pytest_args[@]}" -q -p no:cacheprovider -p qdrant_conformance_plugin \
        --timeout 120 -o addopts="" -rfE --basetemp="$work/$label-pytest" \
        --junitxml="$out/$label.junit.xml" >"$out/$label.pytest.log" 2>&1) || rc=$?
    eval "${label}_wall=$(($(date +%s) - start))"
    log "suite ($label) finished in $(($(date +%s) - start))s: $(tail -n 1 "$out/$label.pytest.log") (pytest exit $rc)"
}

direct_wall=; proxy_wall=
if [ "$mode" != proxy ]; then
    start_qdrant direct
    run_suite direct "http://127.0.0.1:$q_http" "$q_http" "$q_grpc"
    stop "$q_pid" "Qdrant direct" 30
fi

if [ "$mode" != direct ]; then
    start_qdrant proxied
    b_http=$q_http; b_pid=$q_pid
    p_http=$(free_port); p_grpc=$(free_port)
    "$vecwal" proxy qdrant --upstream-http "http://127.0.0.1:$q_http" --upstream-grpc "http://127.0.0.1:$q_grpc" \
        --listen-http "127.0.0.1:$p_http" --listen-grpc "127.0.0.1:$p_grpc" \
        --data-dir "$work/proxy-data" --store "$work/store" >"$work/proxy.out" 2>"$out/proxy.log" &
    proxy_pid=$!; pids+=("$proxy_pid")
    wait_until "the proxy to print 'listening on'" 60 grep -q "listening on" "$work/proxy.out"
    "$venv/bin/python" "$repo/scripts/qdrant_conformance_shim.py" --upstream "http://127.0.0.1:$p_http" \
        --qdrant "http://127.0.0.1:$b_http" --out "$work/captured" >"$work/shim.out" 2>"$out/shim.log" &
    shim_pid=$!; pids+=("$shim_pid")
    wait_until "the shim to print 'shim listening on'" 30 grep -q "shim listening on" "$work/shim.out"
    shim_port=$(awk '/shim listening on/ {print $4}' "$work/shim.out")
    shim=http://127.0.0.1:$shim_port
    run_suite proxy "$shim" "$shim_port" "$p_grpc" "$shim"
    log "capturing the collections the suite left behind"
    http POST "$shim/__conformance/final" 600 >&2 || log "final capture failed"
    echo >&2
    stop "$shim_pid" "the shim" 10
    log "stopping the proxy (it seals and ships the open segment)"
    stop "$proxy_pid" "the proxy to ship and exit" 120
    stop "$b_pid" "Qdrant proxied" 30

    start_qdrant restored
    log "restoring every captured collection into a scratch Qdrant and comparing"
    "$venv/bin/python" "$repo/scripts/qdrant_conformance_check.py" restore --vecwal "$vecwal" \
        --store "$work/store" --events "$work/captured" --target "http://127.0.0.1:$q_http" \
        --target-grpc "http://127.0.0.1:$q_grpc" --out "$out/restores.json" --keep "$out/differing" \
        --jobs "${QDRANT_CONFORMANCE_JOBS:-2}" ${QDRANT_CONFORMANCE_LAST_ONLY:+--last-only} >&2
    stop "$q_pid" "Qdrant restored" 30
fi

rc=0
"$venv/bin/python" "$repo/scripts/qdrant_conformance_check.py" summary \
    --direct "$([ "$mode" = proxy ] || echo "$out/direct.junit.xml")" \
    --proxy "$([ "$mode" = direct ] || echo "$out/proxy.junit.xml")" \
    --restores "$([ "$mode" = direct ] || echo "$out/restores.json")" \
    --known "$repo/scripts/qdrant-conformance-known.txt" --out "$out/summary.json" \
    --direct-wall "$direct_wall" --proxy-wall "$proxy_wall" \
    --qdrant-version "$qdrant_version" --vecwal-version "$vecwal_version" | tee "$out/summary.txt" || rc=$?
exit "$rc"
