"""A workload of the official Qdrant Python client, through the vecwal proxy: REST and
gRPC clients at once, named dense and sparse vectors, payloads, a delete by filter, a
field index, and reads over both. Prints what it read as one JSON line."""

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


def point(i):
    return models.PointStruct(
        id=i,
        vector={
            "dense": [0.1 * (i % 7), 0.2, 0.3 + 0.01 * i, 0.4],
            "sparse": models.SparseVector(indices=[i, i + 1], values=[0.5, 0.25]),
        },
        payload={"n": i, "group": "a" if i % 2 else "b"},
    )


if os.environ.get("MODE") == "grpc-phase":
    # Writes over gRPC only, into a collection that exists (the differential restore test).
    c = os.environ["COLLECTION"]
    grpc.upsert(c, points=[point(i) for i in range(100, 110)])
    grpc.set_payload(c, payload={"grpc": 1}, points=[100, 101, 102])
    grpc.delete(
        c,
        points_selector=models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key="n", match=models.MatchValue(value=104))]
            )
        ),
    )
    grpc.overwrite_payload(c, payload={"n": 1, "group": "z"}, points=[105])
    print(json.dumps({"ok": True}))
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
