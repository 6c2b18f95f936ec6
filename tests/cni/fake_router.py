"""A stand-in for the router's API (stdlib HTTP server on 127.0.0.1, port 0): records
what the plugin asks and answers as the real routes do, or with a planted failure."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeRouter:
    def __init__(self) -> None:
        self.attached: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.ipam: dict[str, Any] | None = {"state": "ready", "pending": [],
                                            "peers": [{"reachable": True, "size": 256}]}
        self.fail: dict[str, tuple[int, str]] = {}  # "METHOD path" -> (status, error)
        self.dns: dict[str, Any] = {"domain": "mesh.local.", "listen": "127.0.0.1:53",
                                    "nameserver": "192.168.5.1"}
        self.dns_later: list[dict[str, Any]] = []  # answered first, one per request
        self.expose: dict[str, Any] | None = None  # None: no expose service (404)
        self.next_ip = 2
        router = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                if self.command != "GET" and self.headers.get("Content-Type") != \
                        "application/json":
                    self._answer(415, {"error": "needs application/json"})
                    return
                router.requests.append((self.command, self.path, body))
                failure = router.fail.get(f"{self.command} {self.path}")
                if failure is not None:
                    self._answer(failure[0], {"error": failure[1]})
                    return
                status, payload = router.route(self.command, self.path, body)
                self._answer(status, payload)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/attach":
            cid = body["container_id"]
            if cid in self.attached:
                return 200, self.attached[cid]
            ip = body.get("ip") or f"10.40.0.{self.next_ip}/24"
            self.next_ip += 1
            view = {"container_id": cid, "mac": f"02:00:00:00:00:{self.next_ip:02x}",
                    "ip": ip if "/" in ip else f"{ip}/24", "port": self.next_ip,
                    "ifname": body["ifname"], "host_ifname": f"vmr{self.next_ip}",
                    "mtu": body.get("mtu") or 1376, "host": "aa:bb:cc:dd:ee:ff",
                    "netns": body["netns"], "name": body.get("name", "")}
            self.attached[cid] = view
            return 200, view
        if method == "DELETE" and path.startswith("/attach/"):
            cid = path.removeprefix("/attach/")
            if self.attached.pop(cid, None) is None:
                return 404, {"error": f"container {cid} is not attached here"}
            return 200, {"container_id": cid, "released": []}
        if method == "GET" and path == "/endpoints":
            rows = [{"container_id": cid, "mac": v["mac"], "ip": v["ip"].split("/")[0],
                     "name": v["name"], "host": v["host"], "local": True}
                    for cid, v in self.attached.items()]
            rows.append({"container_id": "remote-1", "mac": "02:00:00:00:01:01",
                         "ip": "10.40.1.2", "name": "", "host": "x", "local": False})
            return 200, rows
        if method == "GET" and path == "/status":
            return 200, {"name": "aa:bb:cc:dd:ee:ff", "peers": 1}
        if method == "GET" and path == "/status/ipam":
            if self.ipam is None:
                return 404, {"error": "Not Found"}
            return 200, self.ipam
        if method == "GET" and path == "/status/dns":
            return 200, self.dns_later.pop(0) if self.dns_later else self.dns
        if method == "GET" and path == "/status/expose" and self.expose is not None:
            return 200, self.expose
        return 404, {"error": f"no route {method} {path}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
