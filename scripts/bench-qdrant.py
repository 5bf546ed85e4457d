"""Qdrant benchmarks, run by scripts/bench-qdrant.sh against a Qdrant and a vecwal proxy it
started: upsert throughput and p99 batch latency, direct and through the proxy, REST and
gRPC, interleaved in one run; the latency of reads (GET and reads by POST: scroll, count,
search, query) direct and through the proxy; then a restore against a direct bulk upsert of
the same points."""

import json
import os
import random
import subprocess
import sys
import threading
import time

from qdrant_client import QdrantClient, models

Q_HTTP, Q_GRPC = int(os.environ["Q_HTTP"]), int(os.environ["Q_GRPC"])
P_HTTP, P_GRPC = int(os.environ["P_HTTP"]), int(os.environ["P_GRPC"])
DIM, BATCH = 384, 100
BATCHES = int(os.environ.get("BATCHES", "40"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
# Concurrent clients writing one collection (different points): 1, then this many.
CLIENTS = int(os.environ.get("CLIENTS", "4"))
rng = random.Random(7)
# The proxy's CPU time (utime + stime, fields 14 and 15 of /proc/PID/stat, counted after
# the command name in parentheses), to report its CPU per upsert request.
PROXY_PID = os.environ.get("PROXY_PID")
TICK = os.sysconf("SC_CLK_TCK")


def proxy_cpu():
    if not PROXY_PID:
        return 0.0
    with open(f"/proc/{PROXY_PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def client(http, grpc, prefer_grpc):
    kw = dict(host="127.0.0.1", port=http, grpc_port=grpc, prefer_grpc=prefer_grpc, timeout=120)
    try:
        return QdrantClient(check_compatibility=False, **kw)
    except TypeError:
        return QdrantClient(**kw)


def batches(n, start):
    out = []
    for b in range(n):
        out.append([
            models.PointStruct(
                id=start + b * BATCH + i,
                vector=[rng.uniform(-1, 1) for _ in range(DIM)],
                payload={"n": start + b * BATCH + i, "tag": f"t{i % 10}"},
            )
            for i in range(BATCH)
        ])
    return out


def run(cs, collection, data):
    """Upserts `data` into `collection` from one thread per client of `cs`, which share
    the batches; points/s and p99 batch latency (ms)."""
    lat = []

    def work(c, part):
        for pts in part:
            t = time.perf_counter()
            c.upsert(collection, points=pts, wait=True)
            lat.append(time.perf_counter() - t)

    threads = [
        threading.Thread(target=work, args=(c, data[i :: len(cs)])) for i, c in enumerate(cs)
    ]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = time.perf_counter() - t0
    lat.sort()
    return len(data) * BATCH / total, lat[int(len(lat) * 0.99) - 1] * 1000


admin = client(Q_HTTP, Q_GRPC, False)
ENDPOINTS = {
    ("REST", "direct"): (Q_HTTP, Q_GRPC, False),
    ("REST", "proxy"): (P_HTTP, P_GRPC, False),
    ("gRPC", "direct"): (Q_HTTP, Q_GRPC, True),
    ("gRPC", "proxy"): (P_HTTP, P_GRPC, True),
}
next_id = 0
for n_clients in (1, CLIENTS):
    configs = {k: [client(*e) for _ in range(n_clients)] for k, e in ENDPOINTS.items()}
    results = {k: [] for k in configs}
    for r in range(ROUNDS):
        for (proto, path), cs in configs.items():
            name = f"b_{proto}_{path}_{n_clients}_{r}".lower()
            admin.create_collection(
                name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
            )
            data = batches(BATCHES, next_id)
            next_id += BATCHES * BATCH
            cpu0 = proxy_cpu()
            pps, p99 = run(cs, name, data)
            cpu_ms = (proxy_cpu() - cpu0) * 1000 / len(data)
            results[(proto, path)].append((pps, p99, cpu_ms))
            admin.delete_collection(name)
    print(
        f"upsert: {BATCHES} batches of {BATCH} points, {DIM}-dim, wait=true, "
        f"{n_clients} client(s) on one collection, {ROUNDS} interleaved rounds (median)"
    )
    for proto in ("REST", "gRPC"):
        row = {}
        for path in ("direct", "proxy"):
            rs = results[(proto, path)]
            pps = sorted(x[0] for x in rs)[len(rs) // 2]
            p99 = sorted(x[1] for x in rs)[len(rs) // 2]
            cpu = sorted(x[2] for x in rs)[len(rs) // 2]
            row[path] = (pps, p99)
            extra = f"   proxy CPU {cpu:5.2f} ms per request" if path == "proxy" and PROXY_PID else ""
            print(f"  {proto:4} {path:6}: {pps:9.0f} points/s   p99 {p99:7.1f} ms per batch{extra}")
        print(f"  {proto:4} proxy/direct: {row['proxy'][0] / row['direct'][0]:.2f}x")
    sys.stdout.flush()

# Reads: one client, one request at a time, direct and through the proxy interleaved.
READS = int(os.environ.get("READS", "200"))
admin.create_collection("reads", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
for pts in batches(10, 20_000_000):
    admin.upsert("reads", points=pts, wait=True)
import http.client  # noqa: E402

query = json.dumps([rng.uniform(-1, 1) for _ in range(DIM)])
READ_REQUESTS = {
    "GET collection": ("GET", "/collections/reads", None),
    "POST scroll": ("POST", "/collections/reads/points/scroll", '{"limit":10}'),
    "POST count": ("POST", "/collections/reads/points/count", '{"exact":true}'),
    "POST search": ("POST", "/collections/reads/points/search", '{"vector":%s,"limit":10}' % query),
    "POST query": ("POST", "/collections/reads/points/query", '{"query":%s,"limit":10}' % query),
}
conns = {"direct": http.client.HTTPConnection("127.0.0.1", Q_HTTP), "proxy": http.client.HTTPConnection("127.0.0.1", P_HTTP)}
print(f"reads: {READS} requests of each kind, one at a time on a kept-alive HTTP/1.1 connection, "
      "direct and through the proxy interleaved; latency in ms")
for name, (method, path, body) in READ_REQUESTS.items():
    lat = {"direct": [], "proxy": []}
    for _ in range(READS):
        for where, conn in conns.items():
            t = time.perf_counter()
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            lat[where].append((time.perf_counter() - t) * 1000)
            assert r.status == 200, (name, where, r.status)
    for where in lat:
        lat[where].sort()
    p50 = {w: lat[w][len(lat[w]) // 2] for w in lat}
    p99 = {w: lat[w][int(len(lat[w]) * 0.99) - 1] for w in lat}
    print(f"  {name:15} direct p50 {p50['direct']:6.2f} p99 {p99['direct']:6.2f}   "
          f"proxy p50 {p50['proxy']:6.2f} p99 {p99['proxy']:6.2f}   added p50 {p50['proxy'] - p50['direct']:+.2f}")
sys.stdout.flush()

# Restore: the same points upserted directly, against `vecwal restore qdrant` of them.
# Through a second proxy with a stream of its own: the restore reads only these records.
rest_proxy = client(int(os.environ["P2_HTTP"]), int(os.environ["P2_GRPC"]), False)
rest_direct = client(Q_HTTP, Q_GRPC, False)
rest_proxy.create_collection("restore_src", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
data = batches(BATCHES * 2, 10_000_000)
for pts in data:
    rest_proxy.upsert("restore_src", points=pts, wait=True)
admin.create_collection("direct_copy", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
t = time.perf_counter()
for pts in data:
    rest_direct.upsert("direct_copy", points=pts, wait=True)
direct = len(data) * BATCH / (time.perf_counter() - t)
sys.stdout.flush()
# The proxy must ship what it logged: the shell script stops it between the two halves.
print(json.dumps({"direct_bulk_pps": direct, "points": len(data) * BATCH}), file=open(os.environ["HALF"], "w"))
