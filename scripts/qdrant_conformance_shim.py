"""An HTTP shim between Qdrant's API tests and `vecwal proxy qdrant` that records what
Qdrant held just before each collection was deleted.

Every request is forwarded unchanged to --upstream (the proxy) and its answer streamed back
(bodies of any size, Content-Length or chunked, in both directions; hop-by-hop headers are
the only ones not passed on). On `DELETE /collections/{name}` the shim first reads the
collection's whole state from Qdrant itself (--qdrant, not through the proxy, so the reads
are not even offered to the log), then forwards the delete. When Qdrant answered 2xx the
proxy has logged the delete, and the shim appends an event to --events:

    {"seq", "name", "via": "rest"|"grpc"|"final", "existed", "state": FILE|null,
     "status", "t_before_us", "t_after_us"}

t_before_us/t_after_us bracket the forwarded delete on this machine's clock; the proxy
stamps its record in between, which is how the check finds the record's LSN afterwards.
Every forwarded request is also noted in requests.jsonl ({"t_us", "method", "path",
"status"}), so a collection that restores differently can be matched with the requests
that changed it but left no record.

Control calls (not forwarded), for the pytest plugin and the script:
    POST /__conformance/capture?collection=C&via=grpc  -> {"id": N}  (before a gRPC delete)
    POST /__conformance/commit?id=N                  (after it succeeded)
    POST /__conformance/final       capture every collection still there (never deleted)
    POST /__conformance/test?nodeid=T   the test now running (named in later events)

Usage: qdrant_conformance_shim.py --upstream URL --qdrant URL --out DIR
Prints "shim listening on PORT" once it accepts connections (port chosen by the OS).
"""

import argparse
import http.client
import http.server
import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qdrant_conformance_state as qstate  # noqa: E402

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"}
DELETE_COLLECTION = re.compile(r"^/collections/([^/?]+)/?(\?.*)?$")
CHUNK = 64 * 1024


def now_us():
    return time.time_ns() // 1000


class Recorder:
    """Captured states on disk and the event log; one delete at a time, so the order of
    events is the order Qdrant (and the proxy's log) saw the deletes."""

    def __init__(self, qdrant, out):
        self.qdrant, self.out = qdrant, out
        os.makedirs(os.path.join(out, "states"), exist_ok=True)
        self.events_path = os.path.join(out, "events.jsonl")
        self.delete_lock = threading.Lock()
        self.lock = threading.Lock()
        self.seq = 0
        self.pending = {}
        self.test = None
        self.requests = open(os.path.join(out, "requests.jsonl"), "a", buffering=1)

    def note_request(self, t_us, method, path, status):
        line = json.dumps({"t_us": t_us, "method": method, "path": path, "status": status})
        with self.lock:
            self.requests.write(line + "\n")

    def capture(self, name, via):
        """Reads the collection now; returns an event not yet committed."""
        with self.lock:
            self.seq += 1
            seq = self.seq
        event = {"seq": seq, "name": name, "via": via, "existed": False, "state": None,
                 "test": self.test, "t_before_us": now_us()}
        try:
            state = qstate.read_state(self.qdrant, name)
        except Exception as e:  # recorded, so the check can say why there is nothing to compare
            state = None
            event["capture_error"] = f"{type(e).__name__}: {e}"
        if state is not None:
            event["existed"] = True
            event["state"] = f"states/{seq}.json"
            with open(os.path.join(self.out, event["state"]), "w") as f:
                json.dump(state, f)
        return event

    def commit(self, event, status):
        event["status"] = status
        event["t_after_us"] = now_us()
        with self.lock, open(self.events_path, "a") as f:
            f.write(json.dumps(event) + "\n")

    def final(self):
        names = qstate.list_collections(self.qdrant)
        for name in names:
            self.commit(self.capture(name, "final"), 200)
        return len(names)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards the tests, as Qdrant itself offers
    upstream = None  # (host, port)
    recorder = None

    def log_message(self, fmt, *args):  # one line per request would drown the log
        pass

    def _reply_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _control(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self._read_body_discard()
        rec = self.recorder
        if url.path == "/__conformance/capture":
            event = rec.capture(query["collection"], query.get("via", "grpc"))
            rec.pending[event["seq"]] = event
            return self._reply_json(200, {"id": event["seq"]})
        if url.path == "/__conformance/commit":
            event = rec.pending.pop(int(query["id"]), None)
            if event is not None:
                rec.commit(event, int(query.get("status", 200)))
            return self._reply_json(200, {"ok": event is not None})
        if url.path == "/__conformance/test":
            rec.test = query.get("nodeid")
            return self._reply_json(200, {"ok": True})
        if url.path == "/__conformance/final":
            return self._reply_json(200, {"captured": rec.final()})
        return self._reply_json(404, {"error": "unknown control call"})

    def _read_body_discard(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def _request_body(self):
        """Yields the request body in pieces as it arrives (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers: dropped (Qdrant's REST API uses none)
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                piece = self.rfile.read(min(CHUNK, remaining))
                if not piece:
                    raise ConnectionError("client closed the request body early")
                remaining -= len(piece)
                yield piece

    def _forward(self):
        """Sends this request upstream, streams the answer back; returns the status."""
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        conn = http.client.HTTPConnection(*self.upstream, timeout=900)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    conn.putheader(key, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for piece in self._request_body():
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            self.send_response_only(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            has_body = self.command != "HEAD" and resp.status not in (204, 304) and resp.status >= 200
            rechunk = has_body and resp.getheader("Content-Length") is None
            if rechunk:
                self.send_header("Transfer-Encoding", "chunked")
            if resp.will_close and not rechunk and resp.getheader("Content-Length") is None:
                self.close_connection = True
            self.end_headers()
            while has_body:
                piece = resp.read1(CHUNK)
                if not piece:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if rechunk else piece)
                self.wfile.flush()
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return resp.status
        finally:
            conn.close()

    def _handle(self):
        try:
            if self.path.startswith("/__conformance/"):
                return self._control()
            match = DELETE_COLLECTION.match(self.path) if self.command == "DELETE" else None
            if match is None:
                t_us = now_us()
                self.recorder.note_request(t_us, self.command, self.path, self._forward())
                return
            name = urllib.parse.unquote(match.group(1))
            with self.recorder.delete_lock:
                event = self.recorder.capture(name, "rest")
                t_us = now_us()
                status = self._forward()
                self.recorder.note_request(t_us, self.command, self.path, status)
                if 200 <= status < 300:
                    self.recorder.commit(event, status)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception:
            traceback.print_exc()
            self.close_connection = True
            try:
                self._reply_json(502, {"status": {"error": "conformance shim failed"}})
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="where requests go (the proxy)")
    ap.add_argument("--qdrant", required=True, help="Qdrant's REST API, read directly")
    ap.add_argument("--out", required=True, help="directory for events.jsonl and states/")
    args = ap.parse_args()
    up = urllib.parse.urlsplit(args.upstream)
    Handler.upstream = (up.hostname, up.port)
    Handler.recorder = Recorder(args.qdrant, args.out)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"shim listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
