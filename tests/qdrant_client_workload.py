"""A workload of the official Qdrant Python client, through the vecwal proxy: REST and
gRPC clients at once, named dense and sparse vectors, payloads, a delete by filter, a
field index, and reads over both. Prints what it read as one JSON line.

MODE=grpc-random (with COLLECTION, SEED, COUNT): random gRPC writes for the differential
restore test instead."""

import json
import os

from qdrant_client import QdrantClient, models

http_port = int(os.environ["PROXY_HTTP_PORT"])
grpc_port = int(os.environ["PROXY_GRPC_PORT"])
common = dict(host="127.0.0.1", port=http_port, timeout=30)
try:
    rest = QdrantClient(prefer_grpc=False, check_compatibility=False, **common)
    grpc = QdrantClient(grpc_port=grpc_port, prefer_grpc=True, check_compatibility=False, **common)
except TypeError:  # clients before check_compatibility
    rest = QdrantClient(prefer_grpc=False, **common)
    grpc = QdrantClient(grpc_port=grpc_port, prefer_grpc=True, **common)


def vec4(rng):
    return [round(rng.uniform(-1, 1), 3) for _ in range(4)]


def point(i, rng=None):
    """Point i: fixed when no rng is given, random otherwise."""
    if rng is None:
        dense, n, city = [0.1 * (i % 7), 0.2, 0.3 + 0.01 * i, 0.4], i, None
    else:
        dense, n, city = vec4(rng), rng.randrange(100), rng.choice(["Oslo", "Rome", "Lima"])
    payload = {"n": n, "group": "a" if i % 2 else "b"}
    if city:
        payload["city"] = city
    return models.PointStruct(
        id=i,
        vector={
            "dense": dense,
            "sparse": models.SparseVector(indices=[i, i + 1], values=[0.5, 0.25]),
        },
        payload=payload,
    )


if os.environ.get("MODE") == "grpc-random":
    # Random writes over gRPC into a collection that exists, on the same points as the
    # REST writers of the differential restore test, which run at the same time.
    import random

    c = os.environ["COLLECTION"]
    rng = random.Random(int(os.environ["SEED"]))
    writes = 0
    for _ in range(int(os.environ["COUNT"])):
        i = rng.randrange(40)
        wait = rng.randrange(4) != 0
        kind = rng.randrange(9)
        try:
            if kind <= 2:
                pts = [point((i + k) % 40, rng) for k in range(3)]
                extra = {}
                if rng.randrange(3) == 0:
                    extra["update_filter"] = models.Filter(
                        must=[models.FieldCondition(key="n", range=models.Range(lt=50))]
                    )
                if rng.randrange(4) == 0:
                    extra["update_mode"] = rng.choice(
                        [models.UpdateMode.INSERT_ONLY, models.UpdateMode.UPDATE_ONLY]
                    )
                grpc.upsert(c, points=pts, wait=wait, **extra)
            elif kind == 3:
                grpc.delete(c, points_selector=models.PointIdsList(points=[i]), wait=wait)
            elif kind == 4:
                grpc.delete(
                    c,
                    points_selector=models.FilterSelector(
                        filter=models.Filter(
                            must=[
                                models.FieldCondition(key="city", match=models.MatchValue(value="Oslo")),
                                models.FieldCondition(key="n", range=models.Range(gt=90)),
                            ]
                        )
                    ),
                    wait=wait,
                )
            elif kind == 5:
                grpc.set_payload(c, payload={"grpc": rng.randrange(9)}, points=[i], wait=wait)
            elif kind == 6:
                grpc.overwrite_payload(
                    c,
                    payload={"n": rng.randrange(100), "city": "Rome"},
                    points=models.FilterSelector(
                        filter=models.Filter(
                            must=[models.FieldCondition(key="n", range=models.Range(lt=5))]
                        )
                    ),
                    wait=wait,
                )
            elif kind == 7:
                grpc.update_vectors(
                    c,
                    points=[models.PointVectors(id=i, vector={"dense": vec4(rng)})],
                    wait=wait,
                )
            else:
                # Dense: see the REST workload on Qdrant's deleted sparse postings.
                grpc.delete_vectors(c, vectors=["dense"], points=[i], wait=wait)
            writes += 1
        except Exception as e:  # a change to a missing point: refused, not logged
            if "No point" not in str(e):
                raise
    print(json.dumps({"writes": writes}))
    raise SystemExit(0)

rest.create_collection(
    "py",
    vectors_config={"dense": models.VectorParams(size=4, distance=models.Distance.COSINE)},
    sparse_vectors_config={"sparse": models.SparseVectorParams()},
)
rest.upsert("py", points=[point(i) for i in range(10)])
grpc.upsert("py", points=[point(i) for i in range(10, 20)])
grpc.set_payload("py", payload={"seen": True}, points=[1, 3, 11])
grpc.delete(
    "py",
    points_selector=models.FilterSelector(
        filter=models.Filter(
            must=[models.FieldCondition(key="group", match=models.MatchValue(value="b"))]
        )
    ),
)
rest.create_payload_index("py", field_name="n", field_schema=models.PayloadSchemaType.INTEGER)
hits = grpc.query_points("py", query=[0.1, 0.2, 0.3, 0.4], using="dense", limit=3).points
seen = rest.count(
    "py",
    count_filter=models.Filter(
        must=[models.FieldCondition(key="seen", match=models.MatchValue(value=True))]
    ),
).count
print(json.dumps({"count": rest.count("py").count, "seen": seen, "hits": [h.id for h in hits]}))
