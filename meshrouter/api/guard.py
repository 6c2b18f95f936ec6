"""Who may drive the API: the operator's tools, never a web page.

The API listens on localhost, but a page in the operator's browser can reach
localhost too.  Three checks, applied before any route runs:

* **Host**: a request whose ``Host`` is a DNS name other than ``localhost`` (or
  the name the API was told to bind) is refused.  DNS rebinding -- a page's own
  name re-pointed at 127.0.0.1 -- needs such a name; IP literals cannot be
  rebound.
* **Cross-origin**: a request carrying an ``Origin`` that is not this API's own
  origin, or ``Sec-Fetch-Site: cross-site``/``same-site``, is refused.  Browsers
  send these headers; command-line clients do not.
* **JSON on state changes**: POST, PUT and DELETE must say
  ``Content-Type: application/json``.  A browser cannot send that cross-origin
  without a CORS preflight, which this API never approves, so the classic
  ``text/plain`` form post cannot stop the router or make it dial.

A fourth check keeps names honest: a path or query whose percent-escapes do
not decode as UTF-8 is refused (400), never folded into replacement
characters -- two different container IDs must never become one.

Refusals are JSON errors with status 400, 403 or 415, like every other error.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATE_CHANGING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def _host_name(host_header: str) -> str:
    """The name part of a Host header (``[::1]:6784`` -> ``::1``)."""
    text = host_header.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def refusal(
    method: str, headers: dict[str, str], bind_host: str
) -> tuple[int, str] | None:
    """Why this request is refused (status, message), or None to serve it.

    ``headers`` has lower-case names.  Pure, so it is tested without a server.
    """
    host = headers.get("host", "")
    name = _host_name(host)
    if not name:
        return 403, "request has no Host header"
    if not (_is_ip_literal(name) or name == "localhost" or name == bind_host.lower()):
        return 403, (
            f"Host {host!r} is not this API's address; use an IP address or localhost "
            "(requests by other names are refused against DNS rebinding)"
        )
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() != f"http://{host.lower()}":
        return 403, f"cross-origin request from {origin!r} refused"
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ALLOWED_FETCH_SITES:
        return 403, f"cross-site request refused (Sec-Fetch-Site: {site})"
    if method in STATE_CHANGING:
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return 415, (
                f"{method} requests must have Content-Type: application/json "
                f"(got {content_type or 'none'})"
            )
    return None


def undecodable(raw_path: bytes, query: bytes) -> str | None:
    """Why the request target is not valid UTF-8 once unescaped, or None."""
    for what, raw in (("path", raw_path), ("query", query.replace(b"+", b" "))):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return f"the request {what} is not valid UTF-8 once unescaped"
    return None


class RequestGuard:
    """ASGI middleware applying ``refusal`` to every HTTP request."""

    def __init__(self, app: ASGIApp, bind_host: str) -> None:
        self.app = app
        self.bind_host = bind_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {
                key.decode("latin-1").lower(): value.decode("latin-1")
                for key, value in scope.get("headers", [])
            }
            refused = refusal(scope["method"], headers, self.bind_host)
            if refused is None:
                raw_path = scope.get("raw_path") or scope.get("path", "").encode()
                why = undecodable(raw_path, scope.get("query_string", b""))
                refused = None if why is None else (400, why)
            if refused is not None:
                status, message = refused
                body = json.dumps({"error": message, "status": status}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
