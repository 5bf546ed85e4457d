"""pytest plugin for scripts/qdrant-conformance.sh (loaded with `-p qdrant_conformance_plugin`).

Qdrant's tests reach the server through QDRANT_HOST, except `test_stopwords.py`, whose gRPC
client is built with `port=6333, grpc_port=6334` written into the test. Rather than taking
those fixed ports on the machine (a second run, or anything else on 6333/6334, would
collide), this plugin rewrites exactly those two values when a QdrantClient is built:
    6333 -> QDRANT_CONFORMANCE_HTTP_PORT   (the port QDRANT_HOST names)
    6334 -> QDRANT_CONFORMANCE_GRPC_PORT   (Qdrant's gRPC port, or the proxy's)
Nothing else in the suite is touched.

The capture shim sees REST deletes itself; a gRPC client's delete_collection bypasses it.
With QDRANT_CONFORMANCE_SHIM set, such a delete first asks the shim to capture the collection
(`/__conformance/capture`) and, once it succeeded, to commit the event. Each test also tells
the shim its name when it starts, so an event names the test that deleted the collection.
"""

import json
import os
import urllib.request

HARD_CODED_HTTP, HARD_CODED_GRPC = 6333, 6334


def _shim_call(path):
    shim = os.environ["QDRANT_CONFORMANCE_SHIM"]
    req = urllib.request.Request(shim + path, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def pytest_configure(config):
    http_port = os.environ.get("QDRANT_CONFORMANCE_HTTP_PORT")
    grpc_port = os.environ.get("QDRANT_CONFORMANCE_GRPC_PORT")
    if not (http_port and grpc_port):
        return
    import qdrant_client

    cls = qdrant_client.QdrantClient
    original_init, original_delete = cls.__init__, cls.delete_collection

    def init(self, *args, **kwargs):
        if kwargs.get("url") is None and kwargs.get("port") == HARD_CODED_HTTP:
            kwargs["port"] = int(http_port)
        if kwargs.get("grpc_port") == HARD_CODED_GRPC:
            kwargs["grpc_port"] = int(grpc_port)
        self._conformance_grpc = bool(kwargs.get("prefer_grpc"))
        original_init(self, *args, **kwargs)

    def delete_collection(self, collection_name, *args, **kwargs):
        if not (getattr(self, "_conformance_grpc", False) and os.environ.get("QDRANT_CONFORMANCE_SHIM")):
            return original_delete(self, collection_name, *args, **kwargs)
        from urllib.parse import quote

        event = _shim_call(f"/__conformance/capture?via=grpc&collection={quote(collection_name)}")
        result = original_delete(self, collection_name, *args, **kwargs)  # raises on failure
        _shim_call(f"/__conformance/commit?id={event['id']}")
        return result

    cls.__init__ = init
    cls.delete_collection = delete_collection


def pytest_runtest_logstart(nodeid, location):
    if os.environ.get("QDRANT_CONFORMANCE_SHIM"):
        from urllib.parse import quote

        _shim_call(f"/__conformance/test?nodeid={quote(nodeid)}")
