"""Client of the router's HTTP API, used by the CLI's client verbs.

Every failure becomes an ``ApiError`` whose text is one clear line: the router
is not running, it answered with an error, or it answered garbage.
"""

from __future__ import annotations

from typing import Any

import httpx

from meshrouter.errors import ApiError

DEFAULT_TIMEOUT = 10.0


class ApiClient:
    """Synchronous JSON client for ``http://HOST:PORT``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self.base = f"http://{address}"
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            response = httpx.request(
                method, self.base + path, json=body, timeout=timeout or self.timeout
            )
        except httpx.ConnectError as exc:
            raise ApiError(
                f"cannot reach the meshrouter API at {self.address} ({exc}); "
                "is `meshrouter launch peer` running there?",
                503,
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"request to the meshrouter API at {self.address} failed: {exc}", 503
            ) from None
        try:
            payload = response.json()
        except ValueError:
            raise ApiError(
                f"the API at {self.address} answered {response.status_code} with non-JSON content",
                502,
            ) from None
        if response.status_code >= 400:
            message = payload.get("error") if isinstance(payload, dict) else None
            raise ApiError(str(message or f"HTTP {response.status_code}"), response.status_code)
        return payload

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body or {})
