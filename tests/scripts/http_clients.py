"""Sticky-session lab client: from each source address, open N TCP
connections to ADDR:PORT, send one HTTP/1.0 GET on each, and record the body
of every answer (the backend's name) or the error. Writes JSON
{source: [body or "ERR: ..."]} to OUT.

usage: http_clients.py ADDR PORT N OUT SOURCE[,SOURCE...]
"""
import json
import socket
import sys


def get(addr, port, src):
    s = socket.create_connection((addr, port), timeout=3, source_address=(src, 0))
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        return "ERR: " + head.split(b"\r\n", 1)[0].decode(errors="replace")
    return body.decode(errors="replace").strip()


def main():
    addr, port, n, out, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    result = {}
    for src in sources.split(","):
        got = []
        for _ in range(n):
            try:
                got.append(get(addr, port, src))
            except OSError as e:
                got.append("ERR: " + str(e))
        result[src] = got
    with open(out, "w") as f:
        json.dump(result, f)


main()
