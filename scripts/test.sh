#!/usr/bin/env bash
# Runs every test of vecwal, as CI does: formatting, lints, then the whole test suite
# with cargo-nextest. Installs what the tests need first: cargo-nextest, and the real
# services the integration tests run against (scripts/services.sh); the tests start each
# service themselves on free loopback ports and stop it by PID.
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
cargo nextest run --workspace --locked --no-fail-fast "$@"
