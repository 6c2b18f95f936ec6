"""dnsperf against meshrouter's DNS server and against dnsmasq, same 1,000 names,
same machine, same run: queries per second and latency percentiles, as ratios.

Needs the Debian packages ``dnsperf`` and ``dnsmasq-base``.  Both servers listen
on 127.0.0.1 high ports and answer ``svc0..svc999.mesh.local`` A queries from
memory (dnsmasq from an addn-hosts file, with forwarding off).

Two measurements per server:
* saturation: ``dnsperf -c 4 -q 200 -l SECONDS`` (as many queries as it answers);
* latency at a fixed rate: ``dnsperf -Q 5000 -l SECONDS -v``, percentiles computed
  from the per-query latencies dnsperf prints.

    python bench/dns_perf.py [SECONDS]

Prints the load average before and after (figures measured while other work
loads the machine are inflated: compare the ratios, re-run on a quiet machine).
The goal (issue 10): qps at least 0.25 of dnsmasq, p99 under 1 ms at 5,000 qps.

The meshrouter server runs in its own process (``--serve PORT``), built exactly
as the DNS service builds it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = 1000
HERE = Path(__file__).resolve().parent


def address(i: int) -> str:
    return f"10.32.{(i + 1) >> 8}.{(i + 1) & 0xFF}"


def free_port() -> int:
    """A port free on both UDP and TCP (the server binds both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def serve(port: int) -> None:
    """Run meshrouter's DnsServer with NAMES records until killed."""
    import trio

    from meshrouter.dns.access import ClientFilter
    from meshrouter.dns.core import DnsCore
    from meshrouter.dns.records import RecordKey
    from meshrouter.dns.resolver import Resolver
    from meshrouter.dns.server import DnsServer
    from meshrouter.names import PeerName

    core = DnsCore(PeerName(1), "mesh.local.")
    for i in range(NAMES):
        ip = int.from_bytes(bytes(int(o) for o in address(i).split(".")), "big")
        core.add(RecordKey(f"svc{i}.mesh.local.", ip, f"c{i}"), 0.0)

    async def main() -> None:
        async def no_upstreams() -> list[tuple[str, int]]:
            return []

        server = DnsServer(Resolver("mesh.local."), core.view, random.Random(1),
                           listen=("127.0.0.1", port), upstreams=no_upstreams, timeout=1.0,
                           client_filter=ClientFilter([]))
        await server.run()

    trio.run(main)


def wait_answering(port: int, limit: float = 10.0) -> None:
    from dnslib import DNSRecord

    query = DNSRecord.question("svc1.mesh.local", "A").pack()
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            sock.sendto(query, ("127.0.0.1", port))
            try:
                if sock.recv(4096):
                    return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def dnsperf(port: int, datafile: Path, *args: str) -> str:
    return subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile), *args],
        capture_output=True, text=True, check=True, timeout=600).stdout


def saturation(port: int, datafile: Path, seconds: int) -> tuple[float, float]:
    out = dnsperf(port, datafile, "-c", "4", "-q", "200", "-l", str(seconds))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = float(re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", out).group(1))  # type: ignore[union-attr]
    return qps, lost


def latencies(port: int, datafile: Path, seconds: int, rate: int) -> dict[str, float]:
    out = dnsperf(port, datafile, "-Q", str(rate), "-l", str(seconds), "-v")
    values = sorted(float(m.group(1)) for m in re.finditer(
        r"^> \S+ .* ([\d.]+)$", out, re.MULTILINE))
    if not values:
        raise RuntimeError("dnsperf -v printed no latencies")

    def pct(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    return {"p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "p999_ms": pct(0.999), "answers": float(len(values))}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for tool in ("dnsperf", "dnsmasq"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install dnsperf dnsmasq-base)")
    with tempfile.TemporaryDirectory() as tmp:
        datafile = Path(tmp) / "queries"
        datafile.write_text("".join(f"svc{i}.mesh.local A\n" for i in range(NAMES)))
        hosts = Path(tmp) / "hosts"
        hosts.write_text("".join(f"{address(i)} svc{i}.mesh.local\n" for i in range(NAMES)))
        ours_port, theirs_port = free_port(), free_port()
        ours = subprocess.Popen([sys.executable, __file__, "--serve", str(ours_port)],
                                cwd=HERE.parent)
        theirs = subprocess.Popen([
            "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
            f"--addn-hosts={hosts}", "--local=/mesh.local/", "--listen-address=127.0.0.1",
            "--bind-interfaces", f"--port={theirs_port}", f"--pid-file={tmp}/dnsmasq.pid",
            "--user=root", "--cache-size=10000", "--log-facility=/dev/null"])
        try:
            wait_answering(ours_port)
            wait_answering(theirs_port)
            print(f"dnsperf, {NAMES} names, {seconds} s per run, 127.0.0.1 "
                  f"(meshrouter pid {ours.pid}, dnsmasq pid {theirs.pid}); "
                  f"load average {load()}")
            results = {}
            for label, port in (("meshrouter", ours_port), ("dnsmasq", theirs_port)):
                qps, lost = saturation(port, datafile, seconds)
                lat = latencies(port, datafile, seconds, 5000)
                results[label] = (qps, lost, lat)
                print(f"  {label:10s} saturation {qps:>10,.0f} qps (lost {lost:.2f}%); at 5,000 "
                      f"qps: p50 {lat['p50_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, "
                      f"p99 {lat['p99_ms']:.3f} ms, p99.9 {lat['p999_ms']:.3f} ms")
            (q1, _, l1), (q2, _, l2) = results["meshrouter"], results["dnsmasq"]
            print(f"  ratio meshrouter/dnsmasq: qps {q1 / q2:.2f}, p50 latency "
                  f"{l1['p50_ms'] / l2['p50_ms']:.2f}x, p99 latency "
                  f"{l1['p99_ms'] / l2['p99_ms']:.2f}x")
            print(f"  goal: qps ratio >= 0.25: {'met' if q1 / q2 >= 0.25 else 'MISSED'}; "
                  f"p99 < 1 ms at 5,000 qps: {'met' if l1['p99_ms'] < 1.0 else 'MISSED'}; "
                  f"load average now {load()}")
        finally:
            for proc in (ours, theirs):
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        main()
