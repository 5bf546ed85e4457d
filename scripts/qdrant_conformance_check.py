"""The checking half of scripts/qdrant-conformance.sh.

  restore   for every collection state the shim captured, find the LSN just before its
            delete in the proxy's log (or the last LSN, for collections never deleted),
            `vecwal restore qdrant` it into a scratch Qdrant and compare the two states
  summary   pass/fail per test directly and through the proxy (JUnit XML), the restores,
            wall times: a table on stdout, JSON in a file; exit 1 on a regression

Finding the LSN: the shim notes its clock just before forwarding a delete and just after the
answer; the proxy stamps the record in between (it appends after Qdrant's answer, before
passing it on). The delete of that collection whose stamp lies in that window is the one.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import re
import urllib.parse
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qdrant_conformance_state as qstate  # noqa: E402

REST_DELETE = re.compile(r"^DELETE /collections/[^/?\s]+/?[?\s]")
RESTORE_TIMEOUT_S = 300


def log_records(vecwal, store):
    """Every record the proxy shipped, in LSN order (`vecwal inspect --store --json`)."""
    out = subprocess.run([vecwal, "inspect", "--store", store, "--stream", "qdrant", "--json"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    records.sort(key=lambda r: r["lsn"])
    return records


def is_collection_delete(rec):
    if rec.get("kind") == "qdrant-rest":
        return bool(REST_DELETE.match(rec.get("summary", "") + " "))
    return rec.get("kind") == "qdrant-grpc" and rec.get("summary", "").startswith("/qdrant.Collections/Delete ")


def restore_one(args, event, lsn, restored_name):
    cmd = [args.vecwal, "restore", "qdrant", "--store", args.store, "--collection", event["name"],
           "--lsn", str(lsn), "--target", args.target, "--target-grpc", args.target_grpc,
           "--as", restored_name, "--from-empty"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=RESTORE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timed out after {RESTORE_TIMEOUT_S} s"
    if run.returncode != 0:
        lines = [line for line in (run.stderr + run.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        return f"exit {run.returncode}: " + " | ".join(errors[-3:])
    return None


def match_events(events, records):
    """One job per collection state the shim captured: the collection, its incarnation
    (the how-many-th time that name existed and was read), and the LSN to restore to."""
    last_lsn = records[-1]["lsn"] if records else 0
    deletes = {}
    for rec in records:
        if is_collection_delete(rec):
            deletes.setdefault(rec["namespace"], []).append(rec)
    used, jobs, incarnation, previous = set(), [], {}, {}
    absent = 0
    for event in sorted(events, key=lambda e: e["seq"]):
        name = event["name"]
        since_us, previous[name] = previous.get(name, 0), event.get("t_after_us", 0)
        if not event["existed"] and not event.get("capture_error"):
            absent += 1  # the suite deleted a collection that was not there: nothing to compare
            continue
        incarnation[name] = incarnation.get(name, 0) + 1
        result = {"collection": name, "incarnation": incarnation[name], "via": event["via"],
                  "test": event.get("test"), "seq": event["seq"], "lsn": None, "details": []}
        jobs.append((event, result, since_us))
        if event.get("capture_error"):
            result.update(verdict="capture failed", details=[event["capture_error"]])
        elif event["via"] == "final":
            result["lsn"] = last_lsn
        else:
            window = [r for r in deletes.get(name, []) if r["lsn"] not in used
                      and event["t_before_us"] <= r["timestamp_us"] <= event["t_after_us"]]
            if window:
                used.add(window[0]["lsn"])
                result["lsn"] = window[0]["lsn"] - 1
            else:
                result.update(verdict="delete not logged", details=[
                    f"Qdrant answered the {event['via']} delete with {event.get('status')}, but no "
                    f"delete of {name!r} in the log is stamped inside the request"])
    return jobs, absent, last_lsn


# Requests that change no collection: reads (Qdrant reads by POST too), making or deleting
# snapshot files (recovering from one, by location or upload, is a change), and clearing
# Qdrant's list of performance issues (DELETE /issues).
READ_PATH = re.compile(
    r"^(/collections/[^/]+/(points/(search|query|recommend|discover)(/batch|/groups|/matrix/pairs|/matrix/offsets)?"
    r"|points/(scroll|count)|facet|(shards/[0-9]+/)?snapshots(/(?!recover|upload)[^/]+)?)"
    r"|/snapshots(/[^/]+)?|/issues)$")


def unlogged_requests(requests, records, name, since_us, until_us):
    """Successful REST requests to the collection between its previous delete and this
    capture that may change it, yet have no record in the log: the likely cause of a
    difference (the shim saw every request; the proxy logged what it judged a write)."""
    prefix = qstate.collection_path(name)
    logged = {}
    for rec in records:
        if rec["namespace"] == name and since_us <= rec["timestamp_us"] <= until_us and rec["kind"] == "qdrant-rest":
            key = " ".join(rec["summary"].split(" ")[:2])
            logged[key] = logged.get(key, 0) + 1
    seen = {}
    for req in requests:
        path = req["path"].split("?")[0]
        if not (since_us <= req["t_us"] <= until_us and 200 <= req["status"] < 300):
            continue
        if not (path == prefix or path.startswith(prefix + "/")) or is_read(req["method"], path):
            continue
        key = f"{req['method']} {req['path']}"
        seen[key] = seen.get(key, 0) + 1
    missing = [f"{k}" + (f" (x{n - logged.get(k, 0)})" if n - logged.get(k, 0) > 1 else "")
               for k, n in seen.items() if n > logged.get(k, 0)]
    return missing


def is_read(method, path):
    if method in ("GET", "HEAD"):
        return True
    # POST /collections/{c}/points is retrieve; PUT there is upsert.
    return bool(READ_PATH.match(path) or (method == "POST" and re.fullmatch(r"/collections/[^/]+/points", path)))


def template(path):
    """/collections/test_x/shards/0/snapshots/a.snapshot -> /collections/{c}/shards/{n}/snapshots/{name}"""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if i == 2 and parts[1] == "collections" and part != "aliases":
            parts[i] = "{c}"
        elif part.isdigit():
            parts[i] = "{n}"
        elif i > 0 and parts[i - 1] in ("snapshots", "vectors", "index", "aliases") and part not in ("recover", "upload"):
            parts[i] = "{name}"
    return "/".join(parts)


# Recoveries from a snapshot are not replayable requests: the proxy takes a new base of
# the collection after each (docs/qdrant.md), whose snapshot marker is its trace in the log.
REBASE_PATH = re.compile(r"^/collections/([^/]+)/(shards/[0-9]+/)?(snapshots/(recover|upload)|snapshot/partial/recover)$")


def unlogged_endpoints(requests, records):
    """Across the whole run: successful requests that may change something (not reads)
    and have no REST record, counted by method and path template. A recovery from a
    snapshot counts as logged when a snapshot marker of its collection follows it."""
    logged = {}
    markers = {}
    for rec in records:
        if rec["kind"] == "qdrant-rest":
            key = " ".join(rec["summary"].split(" ")[:2])
            logged[key] = logged.get(key, 0) + 1
        elif rec["kind"] == "snapshot":
            markers.setdefault(rec["namespace"], []).append(rec["timestamp_us"])
    out = {}
    for req in requests:
        path = req["path"].split("?")[0]
        if not 200 <= req["status"] < 300 or is_read(req["method"], path):
            continue
        rebase = REBASE_PATH.match(path)
        if rebase:
            times = markers.get(urllib.parse.unquote(rebase.group(1)), [])
            after = [t for t in times if t >= req["t_us"]]
            if after:
                times.remove(min(after))
                continue
        key = f"{req['method']} {req['path']}"
        if logged.get(key, 0) > 0:
            logged[key] -= 1
            continue
        name = f"{req['method']} {template(path)}"
        out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items()))


def run_job(args, event, result):
    """Restores one captured state next to the others in the scratch Qdrant, compares."""
    restored_name = f"conformance_{event['seq']}"
    t0 = time.monotonic()
    error = restore_one(args, event, result["lsn"], restored_name)
    result["restore_s"] = round(time.monotonic() - t0, 3)
    try:
        if error:
            result.update(verdict="restore failed", details=[error])
            return
        with open(os.path.join(args.events, event["state"])) as f:
            original = json.load(f)
        restored = qstate.read_state(args.target, restored_name)
        diffs = qstate.compare(original, restored)
        result.update(verdict="differs" if diffs else "equal", details=diffs)
        if diffs and args.keep:  # both states, for whoever fixes it
            os.makedirs(args.keep, exist_ok=True)
            stem = os.path.join(args.keep, f"{event['seq']}-{event['name']}")
            for suffix, state in (("original", original), ("restored", restored)):
                with open(f"{stem}.{suffix}.json", "w") as f:
                    json.dump(state, f, indent=1)
    finally:
        qstate.request(args.target, "DELETE", qstate.collection_path(restored_name))


def cmd_restore(args):
    started = time.monotonic()
    records = log_records(args.vecwal, args.store)
    with open(os.path.join(args.events, "events.jsonl")) as f:
        events = [json.loads(line) for line in f if line.strip()]
    requests_path = os.path.join(args.events, "requests.jsonl")
    with open(requests_path) if os.path.exists(requests_path) else open(os.devnull) as f:
        requests = [json.loads(line) for line in f if line.strip()]
    jobs, absent, last_lsn = match_events(events, records)
    if args.last_only:  # the quick mode: each name's last incarnation only
        last = {result["collection"]: result["seq"] for _, result, _ in jobs}
        jobs = [job for job in jobs if job[1]["seq"] == last[job[1]["collection"]]]
    todo = [(event, result) for event, result, _ in jobs if "verdict" not in result]
    done = [0]
    lock = threading.Lock()

    def work(job):
        run_job(args, *job)
        with lock:
            done[0] += 1
            if done[0] % 50 == 0 or done[0] == len(todo):
                print(f"  {done[0]} / {len(todo)} restored and compared ({time.monotonic() - started:.0f} s)",
                      flush=True)

    # Restores are independent (each under its own name), so a few run at once.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(work, job) for job in todo]:
            future.result()
    results = []
    for event, result, since_us in jobs:
        results.append(result)
        if result["verdict"] != "equal":
            if result["lsn"] is not None:  # what the log holds last for it, before the target
                last = [r for r in records if r["namespace"] == result["collection"] and r["lsn"] <= result["lsn"]]
                if last:
                    result["last_logged"] = f"LSN {last[-1]['lsn']}: {last[-1]['summary']}"
            missing = unlogged_requests(requests, records, result["collection"], since_us, event["t_before_us"])
            if missing:
                result["unlogged_requests"] = missing
    out = {"records": len(records), "last_lsn": last_lsn, "absent_deletes": absent, "jobs": args.jobs,
           "last_only": args.last_only,
           "unlogged_endpoints": unlogged_endpoints(requests, records),
           "collections": results, "wall_s": round(time.monotonic() - started, 1)}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    counts = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(f"restored and compared {len(results)} collection states in {out['wall_s']} s: {counts}")


# ---------------------------------------------------------------------------------------
# Summary

def junit_results(path):
    """{test id: (status, message)} from pytest's JUnit XML; status passed/failed/skipped."""
    if not path or not os.path.exists(path):
        return None
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                text = (child.get("message") or child.tag).strip().splitlines() or [child.tag]
                status, message = "failed", f"{child.tag}: {text[0][:200]}"
                break
            if child.tag == "skipped":
                status = "skipped"
        old = results.get(test)
        if old is None or rank[status] > rank[old[0]]:
            results[test] = (status, message)
    return results


def known_entries(path):
    """Lines `TEST-ID-OR-PREFIX -- reason` (or `collection NAME -- reason`) of the
    known-differences file."""
    entries = []
    if path and os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                test, _, reason = line.partition(" -- ")
                entries.append((test.strip(), reason.strip() or "(no reason given)"))
    return entries


def counts(results):
    c = {"passed": 0, "failed": 0, "skipped": 0}
    for status, _ in (results or {}).values():
        c[status] += 1
    return c


def cmd_summary(args):
    direct, proxy = junit_results(args.direct), junit_results(args.proxy)
    entries = known_entries(args.known)
    known = [(t, r) for t, r in entries if not t.startswith("collection ")]
    known_collections = [(t.split(None, 1)[1], r) for t, r in entries if t.startswith("collection ")]
    restores = json.load(open(args.restores)) if args.restores and os.path.exists(args.restores) else None
    problems, lines = [], []
    summary = {"qdrant": args.qdrant_version, "vecwal": args.vecwal_version,
               "wall_s": {"direct": args.direct_wall, "proxy": args.proxy_wall}}
    if args.direct and direct is None:
        problems.append("the direct run left no JUnit report")
    if args.proxy and proxy is None:
        problems.append("the run through the proxy left no JUnit report")
    summary["tests"] = {"direct": counts(direct) if direct is not None else None,
                        "proxy": counts(proxy) if proxy is not None else None}
    lines.append(f"Qdrant {args.qdrant_version} API tests (tests/openapi), vecwal {args.vecwal_version}")
    lines.append(f"{'':22}{'direct':>10}{'through proxy':>16}")
    for key in ("passed", "failed", "skipped"):
        d = summary["tests"]["direct"][key] if direct is not None else "-"
        p = summary["tests"]["proxy"][key] if proxy is not None else "-"
        lines.append(f"{'tests ' + key:22}{d:>10}{p:>16}")
    lines.append(f"{'wall time (s)':22}{args.direct_wall or '-':>10}{args.proxy_wall or '-':>16}")
    differing = []
    if direct is not None and proxy is not None:
        for test in sorted(set(direct) | set(proxy)):
            d = direct.get(test, ("missing", ""))
            p = proxy.get(test, ("missing", ""))
            if d[0] == p[0]:
                continue
            reason = next((r for prefix, r in known if test.startswith(prefix)), None)
            regression = d[0] == "passed"
            differing.append({"test": test, "direct": d[0], "proxy": p[0],
                              "message": p[1] or d[1], "known": reason})
            if regression and reason is None:
                problems.append(f"{test} passes directly but is {p[0]} through the proxy")
    summary["differing_tests"] = differing
    if differing:
        lines.append("\nTests whose outcome differs (direct -> through proxy):")
        for t in differing:
            note = f"  [known: {t['known']}]" if t["known"] else ""
            lines.append(f"  {t['test']}: {t['direct']} -> {t['proxy']}{note}")
            if t["message"]:
                lines.append(f"      {t['message']}")
    if restores is not None:
        cols = restores["collections"]
        by = {}
        for c in cols:
            by.setdefault(c["verdict"], []).append(c)
        equal = len(by.get("equal", []))
        summary["collections"] = {"total": len(cols), "equal": equal,
                                  **{k: len(v) for k, v in by.items() if k != "equal"},
                                  "absent_deletes_skipped": restores["absent_deletes"],
                                  "log_records": restores["records"],
                                  "restore_wall_s": restores["wall_s"],
                                  "not_equal": [c for c in cols if c["verdict"] != "equal"]}
        scope = " (the last state of each name only)" if restores.get("last_only") else ""
        lines.append(f"\nCollections restored equal{scope}: {equal} / {len(cols)} "
                     f"({', '.join(f'{len(v)} {k}' for k, v in sorted(by.items()) if k != 'equal') or 'none other'}); "
                     f"{restores['absent_deletes']} deletes of absent collections skipped; "
                     f"{restores['records']} log records; restores took {restores['wall_s']} s")
        summary["unlogged_endpoints"] = restores.get("unlogged_endpoints", {})
        if summary["unlogged_endpoints"]:
            lines.append("\nSuccessful non-read REST requests with no record in the log (whole run; a recovery "
                         "from a snapshot counts as logged when a new base of its collection follows it):")
            for endpoint, n in summary["unlogged_endpoints"].items():
                lines.append(f"  {n:5}  {endpoint}")
        not_equal = [c for c in cols if c["verdict"] != "equal"]
        if not_equal:
            lines.append("\nCollections that did not restore equal (LSN: restored up to; the test that deleted it):")
        for c in not_equal:
            label = f"{c['collection']} #{c['incarnation']}"
            reason = next((r for prefix, r in known_collections if c["collection"] == prefix), None)
            lines.append(f"  {label}, LSN {c['lsn'] if c['lsn'] is not None else '-'}, {c['verdict']}"
                         f" ({c['test'] or c['via']}){f'  [known: {reason}]' if reason else ''}")
            for detail in c["details"]:
                lines.append(f"      {detail[:400]}")
            if c.get("last_logged"):
                lines.append(f"      last logged write of it: {c['last_logged']}")
            if c.get("unlogged_requests"):
                lines.append(f"      successful requests to it with no record: {'; '.join(c['unlogged_requests'])[:400]}")
            if reason is None:
                problems.append(f"collection {label}: {c['verdict']}")
    summary["ok"] = not problems
    summary["problems"] = problems
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print("\n".join(lines))
    print(f"\nsummary JSON: {args.out}")
    print("RESULT: " + ("PASS" if not problems else f"FAIL ({len(problems)} problems)"))
    return 0 if not problems else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("restore")
    r.add_argument("--vecwal", required=True)
    r.add_argument("--store", required=True)
    r.add_argument("--events", required=True, help="the shim's output directory")
    r.add_argument("--target", required=True)
    r.add_argument("--target-grpc", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--keep", help="write both states of every differing collection here")
    r.add_argument("--jobs", type=int, default=2, help="restores at once")
    r.add_argument("--last-only", action="store_true",
                   help="restore only the last state captured of each collection name")
    s = sub.add_parser("summary")
    for name in ("direct", "proxy", "restores", "known", "out", "direct-wall", "proxy-wall",
                 "qdrant-version", "vecwal-version"):
        s.add_argument("--" + name)
    args = ap.parse_args()
    if args.cmd == "restore":
        cmd_restore(args)
        return 0
    return cmd_summary(args)


if __name__ == "__main__":
    sys.exit(main())
