"""``python -m meshrouter.demo.dnsprobe NAME COUNT``, run inside a container's
namespace: asks the container's resolver (the first ``nameserver`` of its
``/etc/resolv.conf``, which ``ip netns exec`` took from ``/etc/netns/<ns>/``)
COUNT times for NAME's A records and prints one JSON list of answers, each the
addresses in the order the server gave them.  The demo reads the orders to show
that the router's DNS spreads clients over every container of a name.

A script of its own (not ``dig``) so the demo needs no extra Debian package.
"""

from __future__ import annotations

import json
import socket
import sys

from dnslib import QTYPE, DNSRecord

MAX_COUNT = 200


def nameserver(path: str = "/etc/resolv.conf") -> str:
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                return fields[1]
    raise SystemExit(f"no nameserver in {path}")


def ask(server: str, name: str, timeout: float = 2.0) -> list[str]:
    query = DNSRecord.question(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query.pack(), (server, 53))
        data, _ = s.recvfrom(4096)
    reply = DNSRecord.parse(data)
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m meshrouter.demo.dnsprobe NAME COUNT", file=sys.stderr)
        return 2
    server = nameserver()
    answers = [ask(server, argv[0]) for _ in range(min(int(argv[1]), MAX_COUNT))]
    print(json.dumps({"server": server, "answers": answers}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
