#!/usr/bin/env python3
"""`vecwal replay --dry-run` lines on stdin as Redis protocol on stdout (a SELECT wherever
the database changes), for `redis-cli --pipe`: the benchmarks' anchor for replay and
restore, fed the very commands vecwal applies."""
import sys
out = sys.stdout.buffer
def words(line):
    parts, cur, i, inq = [], bytearray(), 0, False
    while i < len(line):
        c = line[i]
        if not inq:
            if c == "\"": inq, cur = True, bytearray()
            i += 1; continue
        if c == "\\":
            n = line[i+1]
            if n == "x": cur.append(int(line[i+2:i+4], 16)); i += 4; continue
            cur.append(ord(n)); i += 2; continue
        if c == "\"": parts.append(bytes(cur)); inq = False; i += 1; continue
        cur += c.encode(); i += 1
    return parts
db = None
for line in sys.stdin:
    f = line.split(" ", 3)
    if db != f[2]:
        db = f[2]; w = [b"SELECT", db[2:].encode()]
        out.write(b"*%d\r\n" % len(w) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in w))
    w = words(f[3])
    out.write(b"*%d\r\n" % len(w) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in w))
