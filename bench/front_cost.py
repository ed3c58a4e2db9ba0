#!/usr/bin/env python3
"""front_cost.py — sends N requests over one keep-alive HTTP/1.1 connection (bench/front_cost.sh).

Usage: front_cost.py PORT PATH N [BODY_FILE]
GET PATH without BODY_FILE, POST with it (Content-Type: application/json). Exits 1 when an
answer is not 200 or the connection was not kept open (a reconnect would be counted as work).
"""
import http.client
import sys


def main():
    port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    body = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sock = None
    for _ in range(n):
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"front_cost.py: {path} answered {r.status}")
        if sock is not None and conn.sock is not sock:
            sys.exit(f"front_cost.py: {path} did not keep the connection open")
        sock = conn.sock
    conn.close()


if __name__ == "__main__":
    main()
