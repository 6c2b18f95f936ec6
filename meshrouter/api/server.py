"""HTTP API of a running router, served by hypercorn on trio with Starlette routes.

It runs in the router's own trio run, so handlers read router state directly and
call its verbs synchronously: no locks, no copies.  Every error is JSON
``{"error": message, "status": code}``.  The API listens on 127.0.0.1 by default
and must not be exposed beyond the host.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshrouter.api.errors import status_for
from meshrouter.api.guard import RequestGuard
from meshrouter.config import format_host_port
from meshrouter.errors import ConfigError, InvalidRequestError, MeshError, TooLargeError
from meshrouter.node.router import Router
from meshrouter.node.service import ApiRequest, ApiRoute, RawResponse

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise TooLargeError(f"request body larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLargeError(f"request body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return value


def _peer_list(body: Mapping[str, Any]) -> list[str]:
    peers = body.get("peers")
    if not isinstance(peers, list) or not peers or not all(isinstance(p, str) for p in peers):
        raise InvalidRequestError(
            'expected {"peers": ["HOST[:PORT]", ...]} with at least one peer'
        )
    return peers


def router_routes(router: Router) -> list[ApiRoute]:
    """The routes of the mesh itself; each service adds its own (``api_routes``)."""

    async def status(request: ApiRequest) -> Any:
        return router.status.summary()

    async def status_peers(request: ApiRequest) -> Any:
        return router.status.peer_rows()

    async def status_connections(request: ApiRequest) -> Any:
        return router.status.connection_rows()

    async def status_targets(request: ApiRequest) -> Any:
        return router.status.target_rows()

    async def report(request: ApiRequest) -> Any:
        return router.status.report()

    async def connect(request: ApiRequest) -> Any:
        replace = request.body.get("replace", False)
        if not isinstance(replace, bool):
            raise InvalidRequestError('"replace" must be true or false')
        return {"connecting": router.connect(_peer_list(request.body), replace=replace)}

    async def forget(request: ApiRequest) -> Any:
        return {"unknown": router.forget(_peer_list(request.body))}

    async def stop(request: ApiRequest) -> Any:
        router.stop()
        return {"stopping": True}

    return [
        ApiRoute("GET", "/status", status),
        ApiRoute("GET", "/status/peers", status_peers),
        ApiRoute("GET", "/status/connections", status_connections),
        ApiRoute("GET", "/status/targets", status_targets),
        ApiRoute("GET", "/report", report),
        ApiRoute("POST", "/connect", connect),
        ApiRoute("POST", "/forget", forget),
        ApiRoute("POST", "/stop", stop),
    ]


def _endpoint(route: ApiRoute) -> Handler:
    """A Starlette endpoint for ``route``: JSON in, JSON out, error kinds mapped."""

    async def endpoint(request: Request) -> Response:
        try:
            body = await _json_body(request) if request.method in ("POST", "PUT") else {}
            result = await route.handler(
                ApiRequest(
                    path_params={k: str(v) for k, v in request.path_params.items()},
                    query=dict(request.query_params),
                    body=body,
                )
            )
        except MeshError as exc:
            return error_response(str(exc), status_for(exc))
        if isinstance(result, RawResponse):
            return Response(result.body, status_code=result.status,
                            media_type=result.content_type)
        return JSONResponse(result)

    return endpoint


def build_app(router: Router) -> Starlette:
    """Starlette application exposing ``router`` and the routes of its services."""
    api_routes = router_routes(router)
    for service in router.services:
        api_routes += service.api_routes()
    routes = [
        Route(route.path, _endpoint(route), methods=[route.method]) for route in api_routes
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("API %s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(f"{request.method} {request.url.path}: internal error: {exc}", 500)

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )


class ApiServer:
    """Serves ``build_app(router)`` on ``host:port`` until cancelled, or until
    ``shutdown`` is set: then requests in flight get up to ``graceful_timeout``
    to be answered (a waiting allocation answers 503 with the reason)."""

    def __init__(
        self, router: Router, host: str, port: int, shutdown: trio.Event | None = None
    ) -> None:
        self.router = router
        self.host = host
        self.port = port
        self.shutdown = shutdown if shutdown is not None else trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        config = HypercornConfig()
        where = format_host_port(self.host, self.port)
        config.bind = [where]
        config.accesslog = None
        config.errorlog = logging.getLogger("meshrouter.api.http")
        config.graceful_timeout = 0.5
        app = RequestGuard(build_app(self.router), self.host)
        async with trio.open_nursery() as nursery:
            try:
                binds = await nursery.start(
                    partial(serve, app, config, shutdown_trigger=self.shutdown.wait)  # type: ignore[arg-type]
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve the API on {where}: {exc.strerror or exc}"
                ) from None
            bound = str(binds[0]).removeprefix("http://")
            log.info("API listening on http://%s", bound)
            task_status.started(bound)
