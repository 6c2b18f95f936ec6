"""A TCP transfer for the lab, run inside a container namespace.

``serve IP PORT`` accepts one connection and prints ``<bytes> <sha256>`` of what
arrived; ``send IP PORT N`` sends N pseudo-random bytes and prints the same line
for what it sent.  The test compares the two lines (the oracle is the sender's
own record of its bytes, never the datapath).
"""

from __future__ import annotations

import hashlib
import socket
import sys


def _serve(ip: str, port: int) -> None:
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((ip, port))
        srv.listen(1)
        srv.settimeout(60)
        print("listening", flush=True)
        conn, _ = srv.accept()
        digest, total = hashlib.sha256(), 0
        with conn:
            conn.settimeout(60)
            while chunk := conn.recv(1 << 16):
                digest.update(chunk)
                total += len(chunk)
    print(total, digest.hexdigest(), flush=True)


def _send(ip: str, port: int, size: int) -> None:
    digest, total = hashlib.sha256(), 0
    block = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(256)) * 8
    with socket.create_connection((ip, port), timeout=30) as conn:
        while total < size:
            chunk = block[: min(len(block), size - total)]
            conn.sendall(chunk)
            digest.update(chunk)
            total += len(chunk)
    print(total, digest.hexdigest(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        _serve(sys.argv[2], int(sys.argv[3]))
    else:
        _send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
