#!/usr/bin/env bash
# Redis's own Tcl test suite as a conformance test of the Redis proxy and restore.
#
#   scripts/redis-conformance.sh [--ci | --all | FILE...] [--stall-timeout S] [--resumes N]
#                                [--file-timeout S] [--restore-timeout S]
#
# For each test file (unit/type/list, unit/scripting, …): run it against a fresh Redis
# directly, then against another fresh Redis through `vecwal proxy redis`; stop the proxy
# (SIGTERM: it seals and ships), restore the store into a third fresh Redis and compare the
# keyspace with the proxied one; then restore to the record before each later base snapshot
# (a test that reconnects Redis's replicas makes one), so that every record is applied by
# some restore. Fails if a test passes directly but not through the proxy
# and is not in scripts/redis-conformance-known.txt (file<TAB>test<TAB>reason), or if a
# restore differs. --ci (the default) is the subset CI runs; --all is every file that runs
# against an external server. The work is in scripts/redis_conformance.py; the keyspace
# comparison is scripts/redis-conformance-compare.py.
#
# Builds nothing: the binary is $VECWAL_BIN (default target/release/vecwal). The report,
# summary.json and every log go to $REDIS_CONFORMANCE_OUT (default target/redis-conformance).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

vecwal=${VECWAL_BIN:-target/release/vecwal}
if [ ! -x "$vecwal" ]; then
    echo "no vecwal binary at $vecwal: build it (cargo build --release) or set VECWAL_BIN" >&2
    exit 2
fi
vecwal=$(cd "$(dirname "$vecwal")" && pwd)/$(basename "$vecwal")

# Redis 8.2.3 with RediSearch and RedisJSON, and the Python venv, as the tests use them.
eval "$(./scripts/services.sh)"
# The suite's runtest looks for tclsh8.5, tclsh8.6 or tclsh8.7 (Debian `tcl` gives 8.6).
if ! command -v tclsh8.6 >/dev/null 2>&1 && ! command -v tclsh8.7 >/dev/null 2>&1 &&
    ! command -v tclsh8.5 >/dev/null 2>&1; then
    echo "installing tcl (Debian package; no tclsh8.x found)" >&2
    apt-get install -y --no-install-recommends tcl >&2 ||
        { apt-get update >&2 && apt-get install -y --no-install-recommends tcl >&2; }
fi

# No registry ships Redis's test suite: the project keeps it next to the repository.
suite_archive=${REDIS_TESTS_ARCHIVE:-$repo/../shared/redis-tests/redis-tests-4f8cdc2a.tar.xz}
if [ ! -f "$suite_archive" ]; then
    echo "Redis's test suite not found at $suite_archive (set REDIS_TESTS_ARCHIVE)" >&2
    exit 2
fi

scratch=$(mktemp -d -t vecwal-redis-conformance.XXXXXX)
harness_pid=
cleanup() {
    # The harness kills every process it started by PID when it gets SIGTERM; wait for it,
    # boundedly, before the scratch directory goes.
    if [ -n "$harness_pid" ] && kill -0 "$harness_pid" 2>/dev/null; then
        kill -TERM "$harness_pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$harness_pid" 2>/dev/null; then
            echo "harness pid $harness_pid still running 15 s after SIGTERM: killing it" >&2
            kill -KILL "$harness_pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mkdir -p "$scratch/suite" "$scratch/work"
tar -xJf "$suite_archive" -C "$scratch/suite"
mkdir -p "$scratch/suite/tests/tmp"

out=${REDIS_CONFORMANCE_OUT:-$repo/target/redis-conformance}
rm -rf "$out/logs" "$out/summary.json" "$out/report.txt"  # a previous run's
mkdir -p "$out"
echo "vecwal: $vecwal"
echo "redis-server: $REDIS_SERVER ($("$REDIS_SERVER" --version | grep -o 'v=[^ ]*'))"
echo "tclsh: $(command -v tclsh8.6 tclsh8.7 tclsh8.5 | head -1); report: $out"

# In the background and waited for, so that a signal reaches the trap at once.
"$VECWAL_PYTHON" scripts/redis_conformance.py \
    --suite "$scratch/suite" --work "$scratch/work" --out "$out" \
    --vecwal "$vecwal" --redis-server "$REDIS_SERVER" \
    --redisearch-so "$REDISEARCH_SO" --rejson-so "$REJSON_SO" \
    --known scripts/redis-conformance-known.txt "$@" &
harness_pid=$!
status=0
wait "$harness_pid" || status=$?
harness_pid=
exit "$status"
