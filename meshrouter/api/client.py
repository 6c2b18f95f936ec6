"""Client of the router's HTTP API, used by the CLI's client verbs.

Every failure becomes an ``ApiError`` whose text is one clear line: the router
is not running, it did not answer in time, it answered with an error, or it
answered garbage.

Theory of operation: one request per TCP connection (``Connection: close``),
HTTP/1.1 written and read directly on a socket.  A client verb is started once
per question (and the CNI plugin of a later issue once per container), and
importing an HTTP library (httpx, or even ``http.client`` with ``ssl`` and
``email``) costs more than the request itself.  The peer is always our own API
server, so the reader needs only what it sends: a status line, headers, and a
body delimited by Content-Length, chunked encoding or the end of the stream.
Every read is capped and the whole exchange has one deadline.
"""

from __future__ import annotations

import json
import socket
import time

from meshrouter.addresses import DEFAULT_API_PORT, format_host_port, parse_host_port
from meshrouter.errors import ApiError, ConfigError

TYPE_CHECKING = False  # typing costs ~6 ms per start of meshrouter-cni; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

DEFAULT_TIMEOUT = 10.0
# The largest answer read: the report of a 1,000-peer mesh is a few MiB.
MAX_RESPONSE = 64 * 1024 * 1024
MAX_HEAD = 64 * 1024


class ApiClient:
    """Synchronous JSON client for ``http://HOST:PORT``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            self.host, self.port = parse_host_port(address, DEFAULT_API_PORT, what="API address")
        except ConfigError as exc:
            raise ApiError(str(exc), 400) from None
        self.address = address
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer to ``method path`` (with ``body`` as JSON);
        the whole exchange takes at most ``timeout`` seconds (default: the client's)."""
        wait = timeout or self.timeout
        deadline = time.monotonic() + wait
        data = b"" if body is None else json.dumps(body).encode()
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {format_host_port(self.host, self.port)}",
            "Accept: application/json",
            "Connection: close",
        ]
        if body is not None or method != "GET":
            # State changes always declare JSON: the API refuses them otherwise
            # (a browser cannot send that cross-origin without a preflight).
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
        try:
            sock = socket.create_connection((self.host, self.port), timeout=wait)
        except TimeoutError:
            raise ApiError(
                f"cannot reach the meshrouter API at {self.address} "
                f"(no answer to connect within {wait:g}s)",
                503,
            ) from None
        except OSError as exc:
            raise ApiError(
                f"cannot reach the meshrouter API at {self.address} "
                f"({exc.strerror or exc}); is `meshrouter launch peer` running there?",
                503,
            ) from None
        try:
            sock.sendall(message)
            raw = _read_all(sock, deadline)
        except TimeoutError:
            raise ApiError(
                f"the meshrouter API at {self.address} did not answer "
                f"{method} {path} within {wait:g}s",
                504,
            ) from None
        except OSError as exc:
            raise ApiError(
                f"request to the meshrouter API at {self.address} failed: "
                f"{exc.strerror or exc}",
                502,
            ) from None
        finally:
            sock.close()
        status, payload = _parse_response(self.address, raw)
        return _decode(self.address, status, payload)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body or {})


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes, within the deadline and the cap."""
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(256 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_HEAD + MAX_RESPONSE:
            raise ApiError(f"the API answered more than {MAX_RESPONSE} bytes", 502)
        chunks.append(chunk)


def _parse_response(address: str, raw: bytes) -> tuple[int, bytes]:
    """Status code and body of one HTTP/1.1 response."""

    def garbled(why: str) -> ApiError:
        return ApiError(f"the API at {address} sent a malformed HTTP answer ({why})", 502)

    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator or len(head) > MAX_HEAD:
        raise garbled("no end of headers" if raw else "empty answer")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise garbled(f"status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise garbled(f"header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body, garbled)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit() or int(length) > len(body):
            raise garbled(f"body shorter than Content-Length {length[:20]}")
        body = body[: int(length)]
    return int(parts[1]), body


def _dechunk(data: bytes, garbled: Any) -> bytes:
    """The body of a ``Transfer-Encoding: chunked`` message."""
    out: list[bytes] = []
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            raise garbled("truncated chunk size")
        size_text = data[position:end].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise garbled(f"chunk size {size_text[:20]!r}") from None
        if size == 0:
            return b"".join(out)
        start = end + 2
        if start + size > len(data):
            raise garbled("truncated chunk")
        out.append(data[start : start + size])
        position = start + size + 2


def _decode(address: str, status: int, body: bytes) -> Any:
    """The JSON of an answer, or the ``ApiError`` it reports."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(
            f"the API at {address} answered {status} with non-JSON content", 502
        ) from None
    if status >= 400:
        message = payload.get("error") if isinstance(payload, dict) else None
        raise ApiError(" ".join(str(message or f"HTTP {status}").split()), status)
    return payload
