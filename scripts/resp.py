#!/usr/bin/env python3
"""A minimal Redis client for the project's scripts (standard library only), so that a
machine needs no redis-cli: RESP2 over a socket, one command at a time or pipelined.

    python3 scripts/resp.py wait PORT [SECONDS]     # until PING answers, bounded
    python3 scripts/resp.py PORT COMMAND [ARG...]   # one command, its reply printed
"""
import socket
import sys
import time


class RespError(Exception):
    pass


class Client:
    """simple_as_bytes: `+OK` as b"OK" (the conformance comparison keeps every reply as
    bytes); otherwise as the str "OK"."""

    def __init__(self, port, host="127.0.0.1", timeout=30, simple_as_bytes=False):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()  # appended to and cut from the front: no copy per recv
        self.simple_as_bytes = simple_as_bytes

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _take(self, n):
        """The next n bytes and the CRLF after them; n=None: the next line."""
        while (i := self.buf.find(b"\r\n") if n is None else n) < 0 or len(self.buf) < i + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        data = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return data

    def read(self):
        line = self._take(None)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest if self.simple_as_bytes else rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._take(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RespError("unexpected reply type %r" % kind)

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        r = self.read()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, commands):
        """Sends every command at once; returns the replies (errors as RespError values)."""
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.read() for _ in commands]


def wait(port, seconds=30.0):
    """Waits until a Redis (or the proxy) on `port` answers PING; exits 1 after `seconds`."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            c = Client(port, timeout=2)
            r = c.call("PING")
            c.close()
            if r == "PONG":
                return
        except (OSError, RespError) as e:
            last = e
        time.sleep(0.05)
    sys.exit("nothing answered PING on 127.0.0.1:%d within %g s (%s)" % (port, seconds, last))


def show(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, list):
        return " ".join(show(x) for x in v)
    return str(v)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "wait":
        wait(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30.0)
    elif len(sys.argv) >= 3:
        print(show(Client(int(sys.argv[1])).call(*sys.argv[2:])))
    else:
        sys.exit(__doc__)
