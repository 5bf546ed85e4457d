"""The client side of scripts/bench-rpo.sh (standard library only).

    bench_rpo.py write PORT RATE ACKED_FILE
        SET rpo:N <time> at RATE per second until the connection dies; each acknowledged
        write goes to ACKED_FILE as "N time" the moment its +OK arrives.
    bench_rpo.py compare PORT ACKED_FILE INTERVAL KILLED_AFTER
        Reads every rpo:* key of the restored Redis on PORT, prints one CSV line: interval,
        kill time, writes acknowledged, restored, acknowledged but not restored, and
        RPO = time of the last acknowledged write - time of the last restored write.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resp import Client, RespError  # noqa: E402  (scripts/resp.py)


def write(port, rate, acked_path):
    c = Client(port, timeout=10)
    period, n = 1.0 / rate, 0
    start = time.monotonic()
    with open(acked_path, "w") as out:
        while True:
            # Steady rate: each write at its slot, not after the previous ack plus a gap.
            slot = start + n * period
            delay = slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = time.time()
            try:
                reply = c.call("SET", f"rpo:{n}", repr(t))
            except (OSError, ConnectionError, RespError):
                return  # the proxy is gone
            if reply == "OK":
                out.write(f"{n} {t!r}\n")
                out.flush()
            n += 1


def compare(port, acked_path, interval, killed_after):
    acked = {}
    with open(acked_path) as f:
        for line in f:
            n, t = line.split()
            acked[int(n)] = float(t)
    c = Client(port, timeout=60)
    restored, cursor = {}, "0"
    while True:
        cursor, keys = c.call("SCAN", cursor, "MATCH", "rpo:*", "COUNT", 1000)
        cursor = cursor.decode()
        if keys:
            values = c.call("MGET", *keys)
            for k, v in zip(keys, values):
                restored[int(k.decode().split(":")[1])] = float(v)
        if cursor == "0":
            break
    missing = [n for n in acked if n not in restored]
    last_acked = max(acked.values()) if acked else 0.0
    last_restored = max(restored.values()) if restored else 0.0
    print(f"{interval},{killed_after},{len(acked)},{len(restored)},{len(missing)},"
          f"{last_acked - last_restored:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "write":
        write(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 6 and sys.argv[1] == "compare":
        compare(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit(__doc__)
