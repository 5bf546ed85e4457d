#!/usr/bin/env python3
"""Compares the keyspaces of two Redis servers, key by key, in all 16 databases.

    redis-conformance-compare.py PORT_ORIGINAL PORT_RESTORED     (both on 127.0.0.1)

Per key: TYPE, DEBUG DIGEST-VALUE (for a module type also a dump of its own kind: RedisJSON
has no digest), PEXPIRETIME, and what the digest leaves out (hash field TTLs, a stream's
consumer groups); also the loaded functions and RediSearch indexes. A key whose expiry time
has passed on either side may be gone on either side and is not compared. Prints JSON
{"keys": N, "diffs": [...], "notes": [...]}; exits 0 if equal, 1 if not, 2 if it could not
compare. Used by redis_conformance.py after each restore; needs `enable-debug-command yes`.
"""

import json
import sys
import time

from redis_conformance import Conn, RespError  # the harness's RESP client, next to this file

DATABASES = 16
NOTES = []  # what the comparison had to do first, for the report


def flat_dict(reply):
    return dict(zip(reply[0::2], reply[1::2])) if isinstance(reply, list) else {}


def type_extra(c, kind, key):
    """What DEBUG DIGEST-VALUE leaves out: hash field TTLs and a stream's consumer groups."""
    if kind == b"hash":
        fields = c("HKEYS", key)
        ttls = c("HPEXPIRETIME", key, "FIELDS", len(fields), *fields) if fields else []
        return sorted((f, t) for f, t in zip(fields, ttls) if t != -1) or None
    if kind != b"stream":
        return None
    info = flat_dict(c("XINFO", "STREAM", key))
    meta = [info.get(k) for k in (b"length", b"last-generated-id", b"max-deleted-entry-id",
                                  b"entries-added", b"recorded-first-entry-id")]
    groups = []
    for g in map(flat_dict, c("XINFO", "GROUPS", key)):
        consumers = sorted((d.get(b"name"), d.get(b"pending")) for d in
                           map(flat_dict, c("XINFO", "CONSUMERS", key, g[b"name"])))
        # Pending entries without their idle times, which are clock readings.
        pending = [(p[0], p[1], p[3]) for p in c("XPENDING", key, g[b"name"], "-", "+", 1 << 30)]
        groups.append((g[b"name"], sorted(g.items()), consumers, pending))
    return meta, sorted(groups, key=lambda group: group[0])


CORE_TYPES = {b"string", b"list", b"set", b"zset", b"hash", b"stream"}


def fingerprint(c, kind, key, digest):
    """DEBUG DIGEST-VALUE; for a module type also a dump of its own kind, since a module
    without a digest callback gives a constant (RedisJSON 2.8: the same digest for every
    document)."""
    if kind in CORE_TYPES:
        return digest
    if kind == b"ReJSON-RL":
        return digest, c("JSON.GET", key, "$")
    if kind == b"vectorset":
        # A positive count gives distinct members; the whole set when it is the cardinality.
        members = sorted(c("VRANDMEMBER", key, c("VCARD", key)) or [])
        return digest, [(m, c("VEMB", key, m), c("VGETATTR", key, m)) for m in members]
    return digest, c("DUMP", key)


def end_busy_script(c):
    """A script left running (say, a test that failed through the proxy never killed its
    endless script) makes Redis answer BUSY to everything. SCRIPT KILL and FUNCTION KILL
    end it without touching data: Redis refuses to kill a script that has written."""
    for attempt in range(50):
        try:
            return c("PING")
        except RespError as e:
            if not str(e).startswith("BUSY"):
                raise
            if attempt == 0:
                NOTES.append(f"127.0.0.1:{c.sock.getpeername()[1]} was BUSY running a script:"
                             " sent SCRIPT KILL and FUNCTION KILL before comparing")
            c.pipe([("SCRIPT", "KILL"), ("FUNCTION", "KILL")])
            time.sleep(0.1)
    raise RuntimeError("still BUSY after SCRIPT KILL and FUNCTION KILL for 5 s")


def dump_keyspace(port):
    """{(db, key): (type, pexpiretime, fingerprint, extra)} over all 16 databases, plus the
    loaded functions and search indexes under db -1."""
    c, out = Conn(port, timeout=120), {}
    try:
        end_busy_script(c)
        for db in range(DATABASES):
            c("SELECT", db)
            keys, cursor = set(), b"0"
            while True:
                cursor, batch = c("SCAN", cursor, "COUNT", 1000)
                keys.update(batch)
                if cursor == b"0":
                    break
            keys = sorted(keys)
            for i in range(0, len(keys), 300):
                part = keys[i:i + 300]
                replies = c.pipe([cmd for k in part for cmd in (
                    ("TYPE", k), ("PEXPIRETIME", k), ("DEBUG", "DIGEST-VALUE", k))])
                for j, k in enumerate(part):
                    kind, expire, digest = replies[3 * j:3 * j + 3]
                    if kind == b"none":
                        continue  # expired or deleted since SCAN saw it
                    digest = digest[0] if isinstance(digest, list) else digest
                    out[(db, k)] = (kind, expire, fingerprint(c, kind, k, digest),
                                    type_extra(c, kind, k))
        libs = sorted(repr(flat_dict(lib)) for lib in c("FUNCTION", "LIST", "WITHCODE"))
        out[(-1, b"(functions)")] = (b"-", -1, libs, None)
        indexes = c.pipe([("FT._LIST",)])[0]  # an error without RediSearch: no indexes
        indexes = sorted(indexes) if isinstance(indexes, list) else []
        out[(-1, b"(search indexes)")] = (b"-", -1, indexes, None)
    finally:
        c.sock.close()
    return out


def compare(upstream, restored):
    """Differences between two keyspaces, as readable lines, and the original's key count.
    A key whose expiry time has passed on either side may be gone on either side: skipped."""
    a, b = dump_keyspace(upstream), dump_keyspace(restored)
    now, diffs = int(time.time() * 1000), []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x == y or any(v is not None and 0 <= v[1] <= now for v in (x, y)):
            continue
        if key[0] < 0:
            diffs.append(f"{key[1].decode()}: {str(x[2])[:200]} vs {str(y[2])[:200]}")
            continue
        where = f"db{key[0]} {key[1]!r}"
        if x is None or y is None:
            side = "original" if y is None else "restore"
            diffs.append(f"{where}: {(x or y)[0].decode()} only in the {side}")
            continue
        what = []
        if x[0] != y[0]:
            what.append(f"type {x[0].decode()} vs {y[0].decode()}")
        if x[1] != y[1]:
            delta = f" ({y[1] - x[1]:+d} ms)" if x[1] >= 0 and y[1] >= 0 else ""
            what.append(f"pexpiretime {x[1]} vs {y[1]}{delta}")
        if x[2] != y[2]:
            same_ttl_kind = (x[1] >= 0) == (y[1] >= 0)  # the digest mixes in "has a TTL"
            what.append("value differs" if same_ttl_kind else "digest differs (TTL or value)")
        if x[3] != y[3]:
            what.append("field TTLs differ" if x[0] == b"hash" else "stream groups differ")
        diffs.append(f"{where} ({x[0].decode()}): " + ", ".join(what))
    return diffs, len(a) - 2


if __name__ == "__main__":
    try:
        found, count = compare(int(sys.argv[1]), int(sys.argv[2]))
    except (OSError, RespError, RuntimeError) as e:
        print(f"comparison failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"keys": count, "diffs": found, "notes": NOTES}, indent=1))
    sys.exit(1 if found else 0)
