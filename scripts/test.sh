#!/usr/bin/env bash
# Runs every test of vecwal, as CI does: formatting, lints, the whole test suite with
# cargo-nextest, then the databases' own test suites through the proxies (Redis's Tcl suite,
# the CI set of scripts/redis-conformance.sh; Qdrant's API tests, scripts/qdrant-conformance.sh).
# Installs what the tests need first: cargo-nextest, and the real services the tests run
# against (scripts/services.sh); the tests start each service themselves on free loopback
# ports and stop it by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest (not found)" >&2
    cargo install --locked cargo-nextest
fi

echo "== services"
eval "$(./scripts/services.sh)"
echo "SeaweedFS: $WEED_BIN"
echo "Redis: $REDIS_SERVER (modules: $REDISEARCH_SO, $REJSON_SO)"
# No registry ships the Qdrant server: services.sh unpacks the one ../shared/qdrant carries
# (QDRANT_BIN, when set, wins); a checkout with neither skips the Qdrant tests, loudly.
if [ -n "${QDRANT_BIN:-}" ] && [ -x "$QDRANT_BIN" ]; then
    echo "Qdrant: $QDRANT_BIN"
elif command -v qdrant >/dev/null 2>&1; then
    echo "Qdrant: $(command -v qdrant)"
else
    echo "!!!!! SKIPPED: Qdrant tests: no qdrant binary (no ../shared/qdrant; set QDRANT_BIN or put qdrant on PATH; see docs/qdrant.md) !!!!!"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
status=0
cargo nextest run --workspace --locked --no-fail-fast "$@" || status=$?

# The conformance runs use the vecwal the tests just built.
export VECWAL_BIN=$(pwd)/target/debug/vecwal
echo "== Redis's own tests through the proxy (scripts/redis-conformance.sh --ci)"
./scripts/redis-conformance.sh --ci || status=$?
shared=$(cd .. && pwd)/shared
if [ -n "${QDRANT_BIN:-}" ] && [ -f "$shared/qdrant-tests/qdrant-openapi-tests-1.18.3.tar.xz" ]; then
    echo "== Qdrant's own API tests through the proxy (scripts/qdrant-conformance.sh)"
    # Each collection's last life restored (every life would replay each name's history
    # again and again: minutes more for the same check).
    QDRANT_CONFORMANCE_LAST_ONLY=1 ./scripts/qdrant-conformance.sh || status=$?
else
    echo "!!!!! SKIPPED: Qdrant conformance: no Qdrant server or no ../shared/qdrant-tests !!!!!"
fi
exit "$status"
