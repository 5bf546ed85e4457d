"""A Qdrant collection's whole state, read over REST, and a comparison of two such states.

Shared by the capture shim (the original, read just before the suite deletes a collection)
and the restore check (the same collection restored by `vecwal restore qdrant`). Standard
library only: the shim must start without the suite's venv being importable.

A state is a plain JSON object:
    {"name", "config": <GET /collections/{name} result.config>,
     "payload_schema": {field: {data_type, params}},      # without Qdrant's `points` counts
     "points": [{"id", "vector", "payload"}, ...] sorted by id, "error": null | text}
"""

import http.client
import json
import math
import time
import urllib.parse

# Scroll page size; a strict-mode collection may allow less (max_query_limit).
PAGE = 1000
# How long to wait for Qdrant to apply queued (wait=false) updates before reading points,
# so the state read is what Qdrant will hold once it has applied what it acknowledged.
QUEUE_WAIT_S = 10.0


def request(base, method, path, body=None, timeout=60.0):
    """One REST call; returns (status, parsed JSON or None)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, {"raw": raw[:200].decode("utf-8", "replace")}
    finally:
        conn.close()


def collection_path(name):
    return "/collections/" + urllib.parse.quote(name, safe="")


def list_collections(base):
    status, body = request(base, "GET", "/collections")
    if status != 200:
        raise RuntimeError(f"GET /collections answered {status}: {body}")
    return sorted(c["name"] for c in body["result"]["collections"])


def _info(base, name):
    status, body = request(base, "GET", collection_path(name))
    if status == 404:
        return None
    if status != 200:
        raise RuntimeError(f"GET {collection_path(name)} answered {status}: {body}")
    return body["result"]


def canonical_id(pid):
    """Points sort and match by id; a UUID compares lower-case (Qdrant answers canonically)."""
    return (0, pid, "") if isinstance(pid, int) else (1, 0, str(pid).lower())


def _settled(info):
    """What of a collection's info must stop changing before its state is read."""
    return json.dumps([info.get("config"), info.get("payload_schema"), info.get("points_count")],
                      sort_keys=True)


def read_state(base, name):
    """The collection's config, payload indexes and every point, or None when it is absent."""
    info = _info(base, name)
    if info is None:
        return None
    # An empty queue is not enough: the update Qdrant took off it last may still be being
    # applied (a payload index deleted with wait=false was seen still present, then gone
    # from the restore). So wait, too, until two reads 50 ms apart agree.
    deadline = time.monotonic() + QUEUE_WAIT_S
    seen = None
    while time.monotonic() < deadline:
        queued = (info.get("update_queue") or {}).get("length", 0)
        now = _settled(info)
        if queued == 0 and now == seen:
            break
        seen = now if queued == 0 else None
        time.sleep(0.05)
        info = _info(base, name) or info
    state = {
        "name": name,
        "config": info.get("config"),
        "payload_schema": {
            field: {k: v for k, v in schema.items() if k != "points"}
            for field, schema in (info.get("payload_schema") or {}).items()
        },
        "points": [],
        "error": None,
    }
    strict = (info.get("config") or {}).get("strict_mode_config") or {}
    page = PAGE
    if strict.get("enabled") and strict.get("max_query_limit"):
        page = min(page, int(strict["max_query_limit"]))
    offset, points, throttled = None, [], 0
    for _ in range(100000):  # bounded: 100k pages
        body = {"limit": page, "with_payload": True, "with_vector": True}
        if offset is not None:
            body["offset"] = offset
        status, answer = request(base, "POST", collection_path(name) + "/points/scroll", body)
        if status == 429 and throttled < 30:  # a strict-mode read rate limit: wait it out
            throttled += 1
            time.sleep(1.0)
            continue
        if status != 200:
            state["error"] = f"scroll answered {status}: {json.dumps(answer)[:300]}"
            break
        for p in answer["result"]["points"]:
            points.append({"id": p["id"], "vector": p.get("vector"), "payload": p.get("payload")})
        offset = answer["result"].get("next_page_offset")
        if offset is None:
            break
    state["points"] = sorted(points, key=lambda p: canonical_id(p["id"]))
    return state


# ---------------------------------------------------------------------------------------
# Comparison

REL_TOL = 1e-6


def _short(value, limit=160):
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_diff(a, b, path, out, limit=6):
    """Paths where two JSON values differ (exactly; dict key order ignored)."""
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"{path}.{key}: only in original ({_short(a[key])})")
            elif key not in a:
                out.append(f"{path}.{key}: only in restored ({_short(b[key])})")
            else:
                _json_diff(a[key], b[key], f"{path}.{key}", out, limit)
    elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        out.append(f"{path}: original {_short(a)}, restored {_short(b)}")


def _floats_close(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_floats_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) == {"indices", "values"} and set(b) == {"indices", "values"}:
            # A sparse vector: the same index -> value map, whatever order Qdrant lists it in.
            ma, mb = dict(zip(a["indices"], a["values"])), dict(zip(b["indices"], b["values"]))
            return set(ma) == set(mb) and all(_floats_close(ma[i], mb[i]) for i in ma)
        return set(a) == set(b) and all(_floats_close(a[k], b[k]) for k in a)
    return a == b


def _vector_diff(a, b):
    """Which of a point's vectors differ, by name ("" for an unnamed vector)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if _floats_close(a, b) else [""]
    return sorted(n for n in set(a) | set(b) if n not in a or n not in b or not _floats_close(a[n], b[n]))


def _ids(ids, limit=5):
    shown = ", ".join(json.dumps(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def compare(orig, restored):
    """Differences between the original's state and the restored one, as short sentences;
    empty when equal: config (every section), payload indexes, and every point's id,
    vectors (relative tolerance 1e-6) and payload (exactly)."""
    out = []
    if restored is None:
        return ["the restored collection does not exist"]
    for which, state in (("original", orig), ("restored", restored)):
        if state.get("error"):
            out.append(f"reading the {which} failed: {state['error']}")
    cfg = []
    _json_diff(orig.get("config"), restored.get("config"), "config", cfg)
    _json_diff(orig.get("payload_schema"), restored.get("payload_schema"), "payload_schema", cfg)
    out.extend(cfg)
    a = {json.dumps(canonical_id(p["id"])): p for p in orig["points"]}
    b = {json.dumps(canonical_id(p["id"])): p for p in restored["points"]}
    missing = [a[k]["id"] for k in a if k not in b]
    extra = [b[k]["id"] for k in b if k not in a]
    if missing:
        out.append(f"points: {len(missing)} of {len(a)} missing in restored (ids {_ids(missing)})")
    if extra:
        out.append(f"points: {len(extra)} extra in restored (ids {_ids(extra)})")
    vec_diff, payload_diff = [], []
    for k in a.keys() & b.keys():
        pa, pb = a[k], b[k]
        names = _vector_diff(pa["vector"] or {}, pb["vector"] or {})
        if names:
            vec_diff.append((pa["id"], names))
        if json.dumps(pa["payload"], sort_keys=True) != json.dumps(pb["payload"], sort_keys=True):
            payload_diff.append(pa["id"])
    if vec_diff:
        vec_diff.sort(key=lambda x: canonical_id(x[0]))
        pid, names = vec_diff[0]
        key = json.dumps(canonical_id(pid))
        shown = [f"{n or '(unnamed)'}: original {_short((a[key]['vector'] or {}).get(n) if n else a[key]['vector'], 60)}, "
                 f"restored {_short((b[key]['vector'] or {}).get(n) if n else b[key]['vector'], 60)}" for n in names[:2]]
        out.append(f"vectors differ for {len(vec_diff)} points (ids {_ids([v[0] for v in vec_diff])}; "
                   f"id {json.dumps(pid)}: {'; '.join(shown)})")
    if payload_diff:
        payload_diff.sort(key=canonical_id)
        pid = payload_diff[0]
        key = json.dumps(canonical_id(pid))
        out.append(f"payload differs for {len(payload_diff)} points (ids {_ids(payload_diff)}; "
                   f"id {json.dumps(pid)}: original {_short(a[key]['payload'], 100)}, "
                   f"restored {_short(b[key]['payload'], 100)})")
    return out
