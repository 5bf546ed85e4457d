#!/usr/bin/env python3
"""The application side of scripts/demo.sh: writes documents with embeddings (a RediSearch
vector index) and a vector set, asks for the nearest documents, does damage.

    python3 scripts/demo_client.py write PORT     # index, 200 documents, 50 vector-set elements
    python3 scripts/demo_client.py knn PORT       # the 3 nearest documents to a fixed query
    python3 scripts/demo_client.py count PORT     # keys, and elements of the vector set
    python3 scripts/demo_client.py damage PORT    # deletes every document and the vector set
"""
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resp import Client  # noqa: E402

QUERY = struct.pack("<8f", 0.1, -0.3, 0.5, 0.2, -0.1, 0.4, 0.0, 0.3)


def write(c):
    c.call("FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA", "title", "TEXT",
           "emb", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "8", "DISTANCE_METRIC", "COSINE")
    rng = random.Random(7)
    cmds = []
    for i in range(200):
        v = [rng.uniform(-1, 1) for _ in range(8)]
        cmds.append(["HSET", "doc:%d" % i, "title", "document %d" % i, "emb", struct.pack("<8f", *v)])
        if i < 50:
            cmds.append(["VADD", "products", "VALUES", "8"] + ["%.4f" % x for x in v] + ["item:%d" % i])
    for r in c.pipeline(cmds):
        if isinstance(r, Exception):
            sys.exit("a write failed: %s" % r)


def knn(c):
    r = c.call("FT.SEARCH", "idx", "*=>[KNN 3 @emb $q AS score]", "PARAMS", "2", "q", QUERY,
               "SORTBY", "score", "RETURN", "1", "title", "DIALECT", "2")
    # [total, id, [field, value], id, [field, value], ...]
    return ", ".join(r[i + 1][1].decode() for i in range(1, len(r), 2))


def count(c):
    return "%d keys; vector set: %d elements" % (c.call("DBSIZE"), c.call("VCARD", "products"))


def damage(c):
    cursor, keys = "0", []
    while True:
        cursor, batch = c.call("SCAN", cursor, "MATCH", "doc:*", "COUNT", "1000")
        keys += batch
        cursor = cursor.decode()
        if cursor == "0":
            break
    if keys:
        c.call("DEL", *keys)
    c.call("DEL", "products")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "knn", "count", "damage"):
        sys.exit(__doc__)
    client = Client(int(sys.argv[2]))
    out = globals()[sys.argv[1]](client)
    if out is not None:
        print(out)
