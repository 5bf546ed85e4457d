#!/usr/bin/env bash
# Runs every test of vecwal, as CI does: formatting, lints, then the whole test suite
# with cargo-nextest. Installs what the tests need first (later: the services they run
# against, each bound to 127.0.0.1 and started by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest (not found)" >&2
    cargo install --locked cargo-nextest
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
