"""The snapshot of a big Qdrant collection while writes run, run by
scripts/bench-qdrant-snapshot.sh.

  fill     Q_HTTP Q_GRPC POINTS DIM: a collection `big` of POINTS random points, directly.
  write    PORT SECONDS OUT [BASE]: one writer upserting one point at a time (wait=true)
           into `big` at PORT (the proxy's, or Qdrant's for the anchor) for SECONDS, ids from
           BASE; every request's start time and latency to OUT.
  compare  Q_HTTP A B [SKIP]: collections A and B hold the same points (ids, payloads,
           vectors), leaving out the ids from SKIP on (written to Qdrant directly: those
           before the snapshot are in it, those after are not).
"""

import hashlib
import json
import random
import sys
import time
import urllib.request


def fill(q_http, q_grpc, points, dim):
    from qdrant_client import QdrantClient, models

    c = QdrantClient(host="127.0.0.1", port=q_http, grpc_port=q_grpc, prefer_grpc=True, timeout=300)
    c.create_collection("big", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    rng = random.Random(7)
    batch = 1000
    t = time.perf_counter()
    for start in range(0, points, batch):
        c.upsert(
            "big",
            points=models.Batch(
                ids=list(range(start, start + batch)),
                vectors=[[rng.uniform(-1, 1) for _ in range(dim)] for _ in range(batch)],
                payloads=[{"n": i} for i in range(start, start + batch)],
            ),
            wait=False,
        )
    # One waited write: everything before it is applied.
    c.upsert("big", points=[models.PointStruct(id=points, vector=[0.5] * dim, payload={"n": -1})], wait=True)
    print(f"filled: {points + 1} points of {dim} dims in {time.perf_counter() - t:.1f} s")


def write(p_http, seconds, out, base=10_000_000):
    dim = int(json.load(urllib.request.urlopen(f"http://127.0.0.1:{p_http}/collections/big"))
              ["result"]["config"]["params"]["vectors"]["size"])
    rng = random.Random(11)
    rows = []
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        body = json.dumps({"points": [{"id": base + i, "vector": [rng.uniform(-1, 1) for _ in range(dim)],
                                       "payload": {"w": i}}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{p_http}/collections/big/points?wait=true", data=body,
                                     method="PUT", headers={"Content-Type": "application/json"})
        t0 = time.time()
        urllib.request.urlopen(req).read()
        rows.append((t0, time.time() - t0))
        i += 1
    json.dump(rows, open(out, "w"))


def digest(q_http, name, skip=None):
    """Count and a digest of every point (id, payload, vector), in id order; ids from
    `skip` on left out."""
    h, n, offset = hashlib.sha256(), 0, None
    while True:
        body = {"limit": 5000, "with_payload": True, "with_vector": True}
        if offset is not None:
            body["offset"] = offset
        req = urllib.request.Request(f"http://127.0.0.1:{q_http}/collections/{name}/points/scroll",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        r = json.load(urllib.request.urlopen(req))["result"]
        for p in r["points"]:
            if skip is not None and p["id"] >= skip:
                continue
            vec = [round(x, 5) for x in p["vector"]]
            h.update(json.dumps([p["id"], p["payload"], vec], sort_keys=True).encode())
            n += 1
        offset = r.get("next_page_offset")
        if offset is None:
            return n, h.hexdigest()


def compare(q_http, a, b, skip=None):
    da, db = digest(q_http, a, skip), digest(q_http, b, skip)
    print(f"{a}: {da[0]} points, {b}: {db[0]} points, {'EQUAL' if da == db else 'DIFFERENT'}")
    sys.exit(0 if da == db else 1)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "fill":
        fill(int(args[0]), int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "write":
        write(int(args[0]), float(args[1]), args[2], int(args[3]) if len(args) > 3 else 10_000_000)
    elif cmd == "compare":
        compare(int(args[0]), args[1], args[2], int(args[3]) if len(args) > 3 else None)
    else:
        sys.exit(__doc__)
