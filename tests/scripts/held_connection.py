"""One TCP connection held open across an event: connect from SRC to
ADDR:PORT, send the first line of an HTTP/1.0 request (the server then waits
for the rest), print "connected", wait until the file GO exists, send the
rest of the request and print the answer's body (the backend's name) or
"ERR: ...". The connection's later packets must reach the same server as
its handshake, or the server resets it.

usage: held_connection.py ADDR PORT SRC GO
"""
import os
import socket
import sys
import time


def main():
    addr, port, src, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.create_connection((addr, port), timeout=5, source_address=(src, 0))
    s.sendall(b"GET / HTTP/1.0\r\n")
    print("connected", flush=True)
    deadline = time.time() + 120
    while not os.path.exists(go):
        if time.time() > deadline:
            print("ERR: no go within 120 s", flush=True)
            return
        time.sleep(0.05)
    try:
        s.settimeout(5)
        s.sendall(b"Host: lab\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        print("ERR: " + str(e), flush=True)
        return
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        print("ERR: " + head.split(b"\r\n", 1)[0].decode(errors="replace"), flush=True)
        return
    print("answer: " + body.decode(errors="replace").strip(), flush=True)


main()
