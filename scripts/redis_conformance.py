"""Redis's own Tcl test suite as a conformance test of `vecwal proxy redis` and `restore redis`.

Run by scripts/redis-conformance.sh, which installs what is needed and unpacks the suite.
For each test file: run it against a fresh Redis directly; run it again against another fresh
Redis through the proxy; stop the proxy (SIGTERM seals and ships), restore its store into a
third fresh Redis and compare that keyspace with the proxied Redis's, key by key. Reports per
test which ones pass directly but not through the proxy, and whether each restore is equal.

Standard library only (VECWAL_PYTHON is a plain venv); the RESP client is scripts/resp.py.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resp import Client, RespError  # noqa: E402  (scripts/resp.py, next to this file)

# The --ci set (about 70 s directly): the behaviours the proxy must get right first
# (blocking pops, scripts and BUSY, CLIENT PAUSE, pub/sub, MULTI, expiry), then cheap files
# that add functions, consumer groups, keyspace commands, RESP and client tracking.
# A file named FILE@singledb runs with runtest's --singledb: the suite's clients then send
# no SELECT, so through the proxy they start on its shared upstream connection (docs/redis.md)
# and leave it at their first command that needs a connection of their own; without it,
# every client of the suite SELECTs database 9 first and never shares.
CI_FILES = [
    "unit/type/list", "unit/scripting", "unit/pause", "unit/pubsub", "unit/multi",
    "unit/expire", "unit/type/incr", "unit/functions", "unit/type/stream-cgroups",
    "unit/keyspace", "unit/protocol", "unit/tracking",
    "unit/type/incr@singledb", "unit/expire@singledb", "unit/keyspace@singledb",
    "unit/protocol@singledb", "unit/type/list@singledb", "unit/type/hash@singledb",
]

# The --all set (about 6 minutes directly): every file of tests/unit and tests/unit/type in
# which tests run against an external server (`--host`). Left out because every block in
# them is tagged external:skip: unit/acl, unit/acl-v2, unit/auth, unit/info, unit/maxmemory,
# unit/memefficiency, unit/pubsubshard, unit/client-eviction, unit/obuf-limits,
# unit/aofrw, unit/wait, unit/type/hash-field-expire, unit/limits, unit/networking,
# unit/shutdown, unit/oom-score-adj, unit/tls, unit/printver; and unit/cluster/*,
# unit/moduleapi/* (need a cluster, or the suite's test modules built from Redis's source).
ALL_FILES = CI_FILES + [
    "unit/type/string", "unit/type/hash", "unit/type/set", "unit/type/list-2",
    "unit/type/list-3", "unit/type/zset", "unit/type/stream", "unit/bitfield", "unit/bitops",
    "unit/dump", "unit/geo", "unit/hyperloglog", "unit/info-command", "unit/introspection",
    "unit/introspection-2", "unit/latency-monitor", "unit/lazyfree", "unit/other",
    "unit/querybuf", "unit/quit", "unit/replybufsize", "unit/scan", "unit/slowlog",
    "unit/sort", "unit/violations",
]

# Tests that hang against Redis 8.2.3 even directly in external mode (the suite's README).
SKIP_TESTS = ["SRANDMEMBER with a dict containing long chain",
              "/Keyspace notifications: hash events test"]
# Skipped by --ci only, to fit its budget: the test measures Lua's garbage collection with
# 50 000 sequential SCRIPT LOADs and FUNCTION LOADs (11 s directly, 230 s through the proxy
# at one fsync per write); --all runs it.
CI_SKIP_TESTS = ["Verify Lua performs GC correctly after script loading"]


# ---------------------------------------------------------------- the RESP client

class Conn(Client):
    """scripts/resp.py's client, every reply as bytes, called as c("CMD", ...) (raises an
    error reply) or c.pipe([...]) (error replies as RespError values)."""

    def __init__(self, port, timeout=30.0):
        super().__init__(port, timeout=timeout, simple_as_bytes=True)

    def pipe(self, commands):
        return self.pipeline(commands)

    def __call__(self, *cmd):
        return self.call(*cmd)


# ---------------------------------------------------------------- processes

class Processes:
    """Every process the harness starts, so that all of them are killed by PID at exit."""

    def __init__(self):
        self.live = []

    def start(self, argv, log_path, group=False, **kw):
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=group, **kw)
        proc.group = group
        self.live.append(proc)
        return proc

    def kill(self, proc, sig=signal.SIGKILL):
        if proc.poll() is None:
            try:
                # runtest starts tclsh children of its own: kill the group it leads.
                os.killpg(proc.pid, sig) if proc.group else proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"warning: pid {proc.pid} still alive 10 s after signal {sig}", file=sys.stderr)
        self.forget(proc)

    def forget(self, proc):
        if proc in self.live:
            self.live.remove(proc)

    def kill_all(self):
        for proc in list(self.live):
            self.kill(proc)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_ping(what, port, timeout, proc):
    """Until PING on port answers PONG; fails after timeout, or at once if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering PING")
        try:
            c = Conn(port, timeout=2)
            try:
                if c("PING") == b"PONG":
                    return
            finally:
                c.sock.close()
        except (OSError, RespError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not answering PING on port {port} after {timeout} s")


class Harness:
    def __init__(self, args, procs):
        self.a, self.procs = args, procs

    def start_redis(self, name, workdir, logs):
        """A fresh redis-server 8.2.3 with RediSearch and RedisJSON, otherwise at defaults."""
        port, datadir = free_port(), os.path.join(workdir, name)
        os.makedirs(datadir)
        argv = [
            self.a.redis_server, "--port", str(port),
            # Loopback only: these servers have no password and are nobody else's business.
            "--bind", "127.0.0.1",
            # A directory of its own: RDB files it writes (default save points, DEBUG RELOAD,
            # BGSAVE in tests) stay out of the working directory and away from other servers.
            "--dir", datadir,
            # The Tcl suite uses DEBUG (RELOAD, SLEEP, OBJECT, …) and the restore comparison
            # uses DEBUG DIGEST-VALUE; Redis disables the command by default since 7.0.
            "--enable-debug-command", "yes",
            # The modules production runs with: the proxy and the restore must cope with them.
            "--loadmodule", self.a.redisearch_so, "--loadmodule", self.a.rejson_so,
        ]
        proc = self.procs.start(argv, os.path.join(logs, f"{name}.log"))
        wait_for_ping(f"redis-server ({name})", port, 30, proc)
        return proc, port

    def start_proxy(self, workdir, logs, upstream):
        port, store = free_port(), os.path.join(workdir, "store")
        argv = [self.a.vecwal, "proxy", "redis", "--listen", f"127.0.0.1:{port}",
                "--upstream", f"redis://127.0.0.1:{upstream}",
                "--data-dir", os.path.join(workdir, "wal"), "--store", store]
        # Defaults otherwise (fsync always, ship every 60 s): SIGTERM seals and ships.
        proc = self.procs.start(argv, os.path.join(logs, "proxy.log"))
        # The proxy listens once its base snapshot is stored.
        wait_for_ping("vecwal proxy", port, 60, proc)
        return proc, port, store

    def stop_proxy(self, proc):
        """SIGTERM: the proxy seals and ships the open segment, then exits."""
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.procs.kill(proc)
            return "did not exit within 120 s of SIGTERM"
        finally:
            self.procs.forget(proc)

    def run_suite(self, test_file, port, server_port, log_path, skip=()):
        """Runs one test file against 127.0.0.1:port (the Redis at server_port, or the proxy
        in front of it); returns its parsed results."""
        test_file, singledb = test_file.removesuffix("@singledb"), test_file.endswith("@singledb")
        argv = ["./runtest", "--host", "127.0.0.1", "--port", str(port), "--single", test_file,
                # One client: the file runs in order, and nothing else talks to the server.
                "--clients", "1",
                # An exception inside one test fails that test instead of ending the file,
                # so a proxy problem in one test does not hide the rest of the file.
                "--durable"] + (["--singledb"] if singledb else [])
        for name in SKIP_TESTS + (CI_SKIP_TESTS if self.a.ci else []):
            argv += ["--skiptest", name]
        if skip:
            with open(log_path + ".skip", "w") as f:
                f.write("\n".join(skip) + "\n")
            argv += ["--skipfile", log_path + ".skip"]
        env = dict(os.environ, TERM="dumb")  # no colour codes in the output
        start = time.monotonic()
        proc = self.procs.start(argv, log_path, group=True, cwd=self.a.suite, env=env)
        # A hang is reported as one: the run is killed when for --stall-timeout seconds it
        # prints nothing (each test prints a line when it ends) and Redis runs none of its
        # commands (a slow test through a slow proxy is not a hang), or when it runs longer
        # than --file-timeout in all. Redis is asked only after 10 quiet seconds: the extra
        # connection would be visible to tests that list clients.
        timed_out, size, quiet_since, polled, commands = None, -1, start, start, None
        while proc.poll() is None:
            now = time.monotonic()
            if os.path.getsize(log_path) != size:
                size, quiet_since = os.path.getsize(log_path), now
            elif now - quiet_since > 10 and now - polled > 10:
                polled, previous, commands = now, commands, commands_run(server_port)
                if None not in (previous, commands) and commands != previous:
                    quiet_since = now
            if now - quiet_since > self.a.stall_timeout:
                timed_out = f"no output and no command run for {self.a.stall_timeout} s"
            elif now - start > self.a.file_timeout:
                timed_out = f"still running after {self.a.file_timeout} s"
            if timed_out:
                self.procs.kill(proc)
                break
            time.sleep(0.2)
        seconds = time.monotonic() - start
        self.procs.forget(proc)
        with open(log_path, "rb") as f:
            result = parse_runtest(f.read().decode(errors="replace"))
        result.update(rc=proc.returncode, timed_out=timed_out, seconds=round(seconds, 1))
        return result

    def compare(self, original, restored, log_path):
        """scripts/redis-conformance-compare.py: {keys, diffs, notes} (a failed comparison
        is a difference)."""
        tool = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "redis-conformance-compare.py")
        try:
            out = subprocess.run([sys.executable, tool, str(original), str(restored)],
                                 capture_output=True, timeout=self.a.restore_timeout)
        except subprocess.TimeoutExpired:
            return {"diffs": [f"comparison did not finish within {self.a.restore_timeout} s"]}
        with open(log_path, "wb") as f:
            f.write(out.stdout + out.stderr)
        try:
            return json.loads(out.stdout)
        except ValueError:
            last = (out.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
            return {"diffs": [f"could not compare ({last}): see {log_path}"]}

    def restore(self, store, target, log_path, extra=()):
        """`vecwal restore redis` to the latest record (or as `extra` says); its exit code,
        or why it has none."""
        argv = [self.a.vecwal, "restore", "redis", "--store", store,
                "--target", f"redis://127.0.0.1:{target}", *extra]
        with open(log_path, "wb") as log:
            try:
                return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=self.a.restore_timeout).returncode
            except subprocess.TimeoutExpired:
                return f"did not finish within {self.a.restore_timeout} s"


def base_lsns(vecwal, store):
    """The LSNs of the store's base snapshots, in order (`vecwal ls --json`)."""
    out = subprocess.run([vecwal, "ls", "--store", store, "--json"], capture_output=True,
                         timeout=60, check=True)
    return sorted({s["lsn"] for s in json.loads(out.stdout)["catalog"]["snapshots"]})


def replay_earlier_bases(h, store, target, logs):
    """A restore starts from the newest base at or before its target, so the final restore
    applies only the records after the last base (a test that reconnects Redis's replicas,
    REPLICAOF or DEBUG RELOAD makes a new one). Each earlier base's records are applied
    too: a restore to the record before the next base, which must succeed (a record Redis
    cannot apply breaks the replication link, and the restore says so). The state at that
    moment is not compared: the original's is gone by then."""
    failures = []
    bases = base_lsns(h.a.vecwal, store)
    for n, (base, nxt) in enumerate(zip(bases, bases[1:]), 1):
        if nxt - 1 <= base:
            continue  # no record between the two bases
        log = os.path.join(logs, f"restore-base{n}.txt")
        rc = h.restore(store, target, log, ["--lsn", str(nxt - 1), "--force"])
        if rc != 0:
            failures.append(f"restore to LSN {nxt - 1} (from the base at LSN {base}) "
                            f"failed: {rc} (see {os.path.basename(log)})")
    return len(bases), failures


def commands_run(port):
    """How many commands Redis has run, not counting INFO (this) and REPLCONF (a replica's
    acknowledgements: the proxy keeps a replica link); None if it does not answer."""
    try:
        c = Conn(port, timeout=10)
        try:
            stats = c("INFO", "commandstats").decode()
        finally:
            c.sock.close()
    except (OSError, RespError):
        return None
    return sum(int(calls) for name, calls in re.findall(r"cmdstat_([^:]+):calls=(\d+)", stats)
               if name not in ("info", "replconf"))


def patch_suite(suite):
    """Puts scripts/redis-conformance-sync.tcl in place of the suite's own
    attach_to_replication_stream_on_connection, which can wait forever (see there)."""
    path = os.path.join(suite, "tests", "test_helper.tcl")
    with open(path) as f:
        text = f.read()
    start = text.find("proc attach_to_replication_stream_on_connection {conn} {")
    end = text.find("\nproc attach_to_replication_stream {}", start)
    if start < 0 or end < 0:
        raise SystemExit(f"{path}: attach_to_replication_stream is not where expected")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "redis-conformance-sync.tcl")) as f:
        replacement = f.read()
    with open(path, "w") as f:
        f.write(text[:start] + replacement + text[end:])


# ---------------------------------------------------------------- runtest output

STATUS = re.compile(r"^\[(ok|err|exception|skip|ignore|TIMEOUT)\]:? ?(.*)$")
OK_TIME = re.compile(r"^(.*) \(\d+ ms\)$")


def parse_runtest(text):
    """Tests in order with status and the first lines of their error; an aborted file's
    exception. Repeated test names get ' #2', ' #3' so that each run is compared."""
    tests, order, seen = {}, [], {}
    aborted = current = None
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        m = STATUS.match(line)
        if not m:
            if current is not None and line.strip() and len(current["msg"]) < 3:
                current["msg"].append(line.strip()[:300])
            if line.startswith(("[", "***")):
                current = None
            continue
        status, rest = m.groups()
        current = None
        if status in ("exception", "TIMEOUT"):
            aborted = current = {"status": status, "msg": [rest[:300]]}
            continue
        if status in ("skip", "ignore"):
            continue  # not run: --skiptest, or a tag such as external:skip
        if status == "ok":
            name = OK_TIME.match(rest).group(1) if OK_TIME.match(rest) else rest
        else:
            name = re.sub(r" in tests/\S+\.tcl$", "", rest)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} #{seen[name]}"
        tests[name] = current = {"status": status, "msg": []}
        order.append(name)
    return {"tests": tests, "order": order, "aborted": aborted}


# ---------------------------------------------------------------- one file

def run_file(h, test_file, work):
    """Directly, through the proxy, then restore and compare. A failure of the proxy or the
    restore is a result, not an exception."""
    slug = test_file.replace("/", "_")
    wd, logs = os.path.join(work, slug), os.path.join(h.a.out, "logs", slug)
    os.makedirs(wd)
    os.makedirs(logs, exist_ok=True)
    res = {"file": test_file, "logs": logs}
    server, port = h.start_redis("direct", wd, logs)
    try:
        res["direct"] = h.run_suite(test_file, port, port, os.path.join(logs, "direct.txt"))
    finally:
        h.procs.kill(server)
    started = []
    try:
        upstream, uport = h.start_redis("upstream", wd, logs)
        started.append(upstream)
        proxy, pport, store = h.start_proxy(wd, logs, uport)
        started.append(proxy)
        res["proxy"] = proxied_runs(h, test_file, pport, uport, logs, res["direct"])
        res["proxy_exit"] = h.stop_proxy(proxy)
        restored, rport = h.start_redis("restored", wd, logs)
        started.append(restored)
        begin = time.monotonic()
        rc = h.restore(store, rport, os.path.join(logs, "restore.txt"))
        res["restore"] = {"rc": rc, "seconds": round(time.monotonic() - begin, 1)}
        if rc == 0:
            found = h.compare(uport, rport, os.path.join(logs, "compare.json"))
            res["restore"].update(found, equal=not found["diffs"])
            res["restore"]["bases"], failed = replay_earlier_bases(h, store, rport, logs)
            if failed:
                res["restore"].update(equal=False, diffs=found["diffs"] + failed)
        else:
            res["restore"].update(equal=False, diffs=[
                f"restore failed: {rc} (see restore.txt and restored.log)"])
    except (RuntimeError, OSError, RespError, subprocess.SubprocessError, ValueError,
            KeyError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        for proc in started:
            h.procs.kill(proc)
    return res


def proxied_runs(h, test_file, port, upstream, logs, direct):
    """The file through the proxy. After a hang, runs it again with the tests already
    reported and the one that hung skipped (up to --resumes times), so that one hang does
    not hide the rest of the file. Tests after a resume run without the state the skipped
    tests left, so a few may fail for that reason alone: they are marked `resumed`."""
    merged = run = h.run_suite(test_file, port, upstream, os.path.join(logs, "proxy.txt"))
    merged["hangs"] = []
    for attempt in range(1, h.a.resumes + 2):
        # The first test the hung run never reported is the one it hung in (or the code
        # just before it, between tests).
        hung = next((n for n in direct["order"] if n not in merged["tests"]), None)
        if not run["timed_out"] or hung is None:
            break
        merged["tests"][hung] = {"status": "hang", "msg": [f"killed: {run['timed_out']}"]}
        merged["order"].append(hung)
        merged["hangs"].append(hung)
        if attempt > h.a.resumes or (attempt > 1 and not run["order"]):
            break  # resumes used up, or no progress after the last one: the proxy is stuck
        # Skipping is by name: repeated names (" #2") are skipped all at once.
        skip = sorted({re.sub(r" #\d+$", "", n) for n in merged["order"]})
        log = os.path.join(logs, f"proxy-resume{attempt}.txt")
        run = h.run_suite(test_file, port, upstream, log, skip)
        for name in run["order"]:
            if name not in merged["tests"]:
                merged["tests"][name] = dict(run["tests"][name], resumed=True)
                merged["order"].append(name)
        merged["seconds"] = round(merged["seconds"] + run["seconds"], 1)
        merged.update(timed_out=run["timed_out"], aborted=run["aborted"], rc=run["rc"])
    return merged


def lost_tests(res, known):
    """Tests that passed directly and did not pass through the proxy, in file order."""
    direct, proxy = res["direct"], res.get("proxy")
    out = []
    for name in direct["order"]:
        t = proxy["tests"].get(name) if proxy else None
        if direct["tests"][name]["status"] != "ok" or (t and t["status"] == "ok"):
            continue
        if t:
            status, msg = t["status"] + (" after resume" if t.get("resumed") else ""), t["msg"]
        elif proxy and proxy["timed_out"]:
            status, msg = "not run", ["the run hung and was not resumed further"]
        elif proxy and proxy["aborted"]:
            status, msg = "not run", ["file aborted: " + " ".join(proxy["aborted"]["msg"])]
        else:
            status, msg = "not run", [res.get("error") or "not reported by runtest"]
        # A test's known reason holds in either mode (FILE covers FILE@singledb).
        base = res["file"].removesuffix("@singledb")
        out.append({"test": name, "status": status, "msg": msg,
                    "known": known.get((res["file"], name)) or known.get((base, name))})
    return out


def load_known(path):
    """{(file, test): reason} from lines file<TAB>test name<TAB>reason; '#' comments."""
    known = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise SystemExit(f"{path}:{n}: want file<TAB>test name<TAB>reason")
            known[(parts[0].removesuffix(".tcl"), parts[1])] = parts[2]
    return known


# ---------------------------------------------------------------- report

def summarize(results, known):
    """Per-file rows and totals. `problems` fail the run (the harness could not do its job,
    or the proxy exited badly); `notes` explain lost tests (a hang, an aborted file)."""
    def count_ok(run):
        return sum(1 for t in run["tests"].values() if t["status"] == "ok")
    rows = []
    for res in results:
        d, r = res["direct"], res.get("restore") or {}
        p = res.get("proxy") or {"tests": {}, "order": [], "aborted": None,
                                  "timed_out": None, "seconds": None}
        problems = [m for m in (
            res.get("error"),
            d["timed_out"] and f"direct run hung ({d['timed_out']})",
            d["aborted"] and "direct run aborted: " + " ".join(d["aborted"]["msg"]),
            res.get("proxy_exit") not in (0, None) and f"proxy exit: {res['proxy_exit']}",
        ) if m]
        notes = [f"proxied run hung in or just before: {n}" for n in p.get("hangs", [])]
        notes += r.get("notes", [])
        notes += [m for m in (
            p["timed_out"] and f"proxied run hung ({p['timed_out']}) and was not resumed",
            p["aborted"] and "proxied run aborted: " + " ".join(p["aborted"]["msg"]),
        ) if m]
        lost = lost_tests(res, known)
        rows.append({
            "file": res["file"], "direct_ok": count_ok(d), "direct_ran": len(d["tests"]),
            "proxy_ok": count_ok(p), "proxy_ran": len(p["tests"]),
            "direct_s": d["seconds"], "proxy_s": p["seconds"],
            "lost": lost, "lost_unknown": sum(1 for t in lost if not t["known"]),
            "known_now_passing": sorted(n for (f, n) in known if f == res["file"]
                                        and p["tests"].get(n, {}).get("status") == "ok"),
            "restore_equal": bool(r.get("equal")), "restore_keys": r.get("keys"),
            "restore_bases": r.get("bases"),
            "restore_diffs": r.get("diffs", ["no restore"]), "problems": problems,
            "notes": notes})
    totals = {k: sum(row[k] or 0 for row in rows) for k in
              ("direct_ok", "proxy_ok", "direct_s", "proxy_s", "lost_unknown")}
    totals.update(direct_s=round(totals["direct_s"], 1), proxy_s=round(totals["proxy_s"], 1),
                  lost=sum(len(row["lost"]) for row in rows),
                  restores_unequal=sum(not row["restore_equal"] for row in rows),
                  problems=sum(bool(row["problems"]) for row in rows))
    return rows, totals


def render(rows, totals):
    out = [f"{'file':26} {'direct ok/ran':>13} {'proxy ok/ran':>13} {'lost':>5} "
           f"{'restore':>26} {'direct s':>9} {'proxy s':>8}"]
    for r in rows:
        restore = f"equal ({r['restore_keys']} keys, {r['restore_bases']} bases)" \
            if r["restore_equal"] else f"DIFFERS ({len(r['restore_diffs'])})"
        proxy_s = "-" if r["proxy_s"] is None else f"{r['proxy_s']:.1f}"
        out.append(f"{r['file']:26} {r['direct_ok']:>6}/{r['direct_ran']:<6} "
                   f"{r['proxy_ok']:>6}/{r['proxy_ran']:<6} {len(r['lost']):>5} {restore:>26} "
                   f"{r['direct_s']:>9.1f} {proxy_s:>8}")
    out.append(f"{'total':26} {totals['direct_ok']:>13} {totals['proxy_ok']:>13} "
               f"{totals['lost']:>5} {str(totals['restores_unequal']) + ' differ':>26} "
               f"{totals['direct_s']:>9.1f} {totals['proxy_s']:>8.1f}")
    for r in rows:
        lines = [f"  problem: {m}" for m in r["problems"]] + [f"  {m}" for m in r["notes"]]
        not_run = [t["test"] for t in r["lost"] if t["status"] == "not run"]
        for t in r["lost"]:
            if t["status"] != "not run":
                lines.append(f"  LOST [{'known: ' + t['known'] if t['known'] else t['status']}]"
                             f" {t['test']}")
                msg = t["msg"][:2]  # runtest --durable cuts 10 characters off an error's
                if len(msg) == 2 and msg[1].endswith(msg[0]):  # first line; the next is whole
                    msg = msg[1:]
                lines += [f"      {m}" for m in msg if not t["known"]]
        if not_run:
            lines.append(f"  LOST [not run] {len(not_run)} tests, from {not_run[0]!r} on "
                         "(all in summary.json)")
        if not r["restore_equal"]:
            lines.append(f"  RESTORE DIFFERS ({len(r['restore_diffs'])} keys):")
            lines += [f"      {d}" for d in r["restore_diffs"][:20]]
            if len(r["restore_diffs"]) > 20:
                lines.append(f"      … and {len(r['restore_diffs']) - 20} more (summary.json)")
        lines += [f"  known entry now passes (remove it): {n}" for n in r["known_now_passing"]]
        if lines:
            out += ["", r["file"]] + lines
    return "\n".join(out)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="test files such as unit/type/list")
    ap.add_argument("--ci", action="store_true", help="the CI subset (the default)")
    ap.add_argument("--all", action="store_true", help="every file that runs in external mode")
    for name in ("suite", "work", "out", "vecwal", "redis-server", "redisearch-so",
                 "rejson-so", "known"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--file-timeout", type=int, default=600, help="seconds per run of a file")
    ap.add_argument("--stall-timeout", type=int, default=120, help="seconds without output "
                    "and without a command reaching Redis after which a run counts as hung")
    ap.add_argument("--resumes", type=int, default=3,
                    help="how often a hung proxied run is resumed after the test that hung")
    ap.add_argument("--restore-timeout", type=int, default=180, help="seconds per restore")
    a = ap.parse_args()
    files = [f.removesuffix(".tcl").removeprefix("tests/") for f in a.files]
    files = files or (ALL_FILES if a.all else CI_FILES)
    a.ci = files == CI_FILES
    known = load_known(a.known)
    patch_suite(a.suite)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds to the finally below, which kills by PID
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    procs, results, wall = Processes(), [], time.monotonic()
    h = Harness(a, procs)
    try:
        for n, test_file in enumerate(files, 1):
            print(f"[{n}/{len(files)}] {test_file}", flush=True)
            results.append(run_file(h, test_file, a.work))
            rows, totals = summarize(results, known)
            r = rows[-1]
            print(f"    direct {r['direct_ok']}/{r['direct_ran']} in {r['direct_s']} s, proxy "
                  f"{r['proxy_ok']}/{r['proxy_ran']} in {r['proxy_s']} s, lost {len(r['lost'])}, "
                  f"restore {'equal' if r['restore_equal'] else 'DIFFERS'}"
                  + "".join(f"; {m}" for m in r["problems"] + r["notes"]), flush=True)
            # Written after every file, so that an interrupted run still leaves its results.
            with open(os.path.join(a.out, "summary.json"), "w") as f:
                json.dump({"files": rows, "totals": totals, "vecwal": a.vecwal,
                           "wall_s": round(time.monotonic() - wall, 1), "runs": results},
                          f, indent=1, default=repr)
    finally:
        procs.kill_all()
    rows, totals = summarize(results, known)
    text = render(rows, totals)
    with open(os.path.join(a.out, "report.txt"), "w") as f:
        f.write(text + "\n")
    print(f"\n{text}\n\nwall time {time.monotonic() - wall:.0f} s; report {a.out}/report.txt, "
          f"summary {a.out}/summary.json, logs {a.out}/logs/")
    if totals["lost_unknown"] or totals["restores_unequal"] or totals["problems"]:
        print(f"FAILED: {totals['lost_unknown']} tests pass directly but not through the proxy "
              f"(not in the allow-list), {totals['restores_unequal']} restores differ, "
              f"{totals['problems']} files with harness or proxy-exit problems")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
