"""``python -m meshrouter.demo.forward --fd N --to HOST:PORT --run DIR``: the demo's
window onto a router's API for a browser on this machine.

A router's API listens on the loopback of its host *namespace*, which a browser
in the root namespace cannot reach.  The demo binds a listening socket on
127.0.0.1 in the root namespace and hands it (file descriptor N) to this
process, which it starts inside the host namespace with ``ip netns exec``: the
inherited socket stays in the namespace where it was made, while every
connection this process opens is made in the host's.  Bytes are copied both
ways, at most ``MAX_CONNECTIONS`` connections at once.  ``--run`` names the
demo's run directory only so that the demo's sweep recognises the process.
"""

from __future__ import annotations

import argparse
import socket
import threading

MAX_CONNECTIONS = 32
CHUNK = 65536


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy until ``src`` ends; pass its end on as a half-close (the answer may
    still come the other way); on an error, end both."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _serve(client: socket.socket, target: tuple[str, int], slots: threading.Semaphore) -> None:
    try:
        with client, socket.create_connection(target, timeout=10) as upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()
    except OSError:
        pass
    finally:
        slots.release()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshrouter.demo.forward")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--to", required=True, help="HOST:PORT inside this namespace")
    parser.add_argument("--run", required=True, help="the demo run directory (a marker)")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    target = (host, int(port))
    listener = socket.socket(fileno=args.fd)
    slots = threading.Semaphore(MAX_CONNECTIONS)
    while True:
        client, _ = listener.accept()
        if not slots.acquire(blocking=False):
            client.close()
            continue
        threading.Thread(target=_serve, args=(client, target, slots), daemon=True).start()


if __name__ == "__main__":
    main()
