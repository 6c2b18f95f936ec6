"""HTTP API of a running router, served by hypercorn on trio with Starlette routes.

It runs in the router's own trio run, so handlers read router state directly and
call its verbs synchronously: no locks, no copies.  Every error is JSON
``{"error": message, "status": code}``.  The API listens on 127.0.0.1 by default
and must not be exposed beyond the host.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
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

from meshrouter.config import format_host_port
from meshrouter.errors import ApiError, ConfigError, IpamError, MeshError
from meshrouter.names import format_peer_name, parse_peer_name
from meshrouter.node.ipam_service import IpamService
from meshrouter.node.router import Router

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
DEFAULT_WAIT = 30.0
MAX_WAIT = 3600.0
Handler = Callable[[Request], Awaitable[Response]]


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise ApiError(f"request body larger than {MAX_BODY} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(f"request body larger than {MAX_BODY} bytes", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(f"request body is not valid JSON: {exc}", 400) from None
    if not isinstance(value, dict):
        raise ApiError("request body must be a JSON object", 400)
    return value


def _peer_list(body: dict[str, Any]) -> list[str]:
    peers = body.get("peers")
    if not isinstance(peers, list) or not peers or not all(isinstance(p, str) for p in peers):
        raise ApiError('expected {"peers": ["HOST[:PORT]", ...]} with at least one peer', 400)
    return peers


def build_app(router: Router) -> Starlette:
    """Starlette application exposing ``router``."""

    def guarded(handler: Handler) -> Handler:
        async def wrapper(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return error_response(str(exc), exc.status)
            except IpamError as exc:
                return error_response(str(exc), exc.status)
            except ConfigError as exc:
                return error_response(str(exc), 400)
            except MeshError as exc:
                return error_response(str(exc), 500)

        return wrapper

    async def status(request: Request) -> Response:
        return JSONResponse(router.status_summary())

    async def status_peers(request: Request) -> Response:
        return JSONResponse(router.peer_rows())

    async def status_connections(request: Request) -> Response:
        return JSONResponse(router.connection_rows())

    async def status_targets(request: Request) -> Response:
        return JSONResponse(router.target_rows())

    async def report(request: Request) -> Response:
        return JSONResponse(router.report())

    async def connect(request: Request) -> Response:
        body = await _json_body(request)
        replace = body.get("replace", False)
        if not isinstance(replace, bool):
            raise ApiError('"replace" must be true or false', 400)
        added = router.connect(_peer_list(body), replace=replace)
        return JSONResponse({"connecting": added})

    async def forget(request: Request) -> Response:
        body = await _json_body(request)
        unknown = router.forget(_peer_list(body))
        return JSONResponse({"unknown": unknown})

    async def stop(request: Request) -> Response:
        router.stop()
        return JSONResponse({"stopping": True})

    def ipam() -> IpamService:
        if router.ipam is None:
            raise ApiError("IPAM is disabled on this router (--no-ipam)", 404)
        return router.ipam

    def wait_seconds(request: Request) -> float:
        text = request.query_params.get("wait", str(DEFAULT_WAIT))
        try:
            wait = float(text)
        except ValueError:
            raise ApiError(f"wait={text!r} is not a number of seconds", 400) from None
        if not 0 <= wait <= MAX_WAIT:
            raise ApiError(f"wait must be 0..{MAX_WAIT:g} seconds", 400)
        return wait

    async def ip_allocate(request: Request) -> Response:
        container = request.path_params["container"]
        subnet = None
        if "net" in request.path_params:
            subnet = f"{request.path_params['net']}/{request.path_params['prefix']}"
        address = await ipam().allocate(container, subnet, wait_seconds(request))
        return JSONResponse({"container": container, "address": address})

    async def ip_claim(request: Request) -> Response:
        container = request.path_params["container"]
        address = await ipam().claim(container, request.path_params["address"],
                                     wait_seconds(request))
        return JSONResponse({"container": container, "address": address})

    async def ip_lookup(request: Request) -> Response:
        container = request.path_params["container"]
        addresses = ipam().lookup(container)
        if not addresses:
            raise ApiError(f"container {container} has no address", 404)
        return JSONResponse({"container": container, "addresses": addresses})

    async def ip_release(request: Request) -> Response:
        container = request.path_params["container"]
        freed = ipam().release(container, request.path_params.get("address"))
        if not freed:
            raise ApiError(f"container {container} has no such address", 404)
        return JSONResponse({"container": container, "released": freed})

    async def status_ipam(request: Request) -> Response:
        return JSONResponse(ipam().status())

    async def rmpeer(request: Request) -> Response:
        try:
            name = parse_peer_name(request.path_params["name"])
        except ConfigError as exc:
            raise ApiError(str(exc), 400) from None
        taken = ipam().rmpeer(name)
        return JSONResponse({"peer": request.path_params["name"], "addresses_taken": taken})

    async def reset(request: Request) -> Response:
        heir = ipam().reset()
        await router.drain_gossip(2.0)
        router.leave()
        return JSONResponse({"handed_to": format_peer_name(heir) if heir is not None else None,
                             "stopping": True})

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code)

    routes = [
        Route("/status", guarded(status), methods=["GET"]),
        Route("/status/peers", guarded(status_peers), methods=["GET"]),
        Route("/status/connections", guarded(status_connections), methods=["GET"]),
        Route("/status/targets", guarded(status_targets), methods=["GET"]),
        Route("/report", guarded(report), methods=["GET"]),
        Route("/connect", guarded(connect), methods=["POST"]),
        Route("/forget", guarded(forget), methods=["POST"]),
        Route("/stop", guarded(stop), methods=["POST"]),
        Route("/status/ipam", guarded(status_ipam), methods=["GET"]),
        Route("/ip/{container}", guarded(ip_allocate), methods=["POST"]),
        Route("/ip/{container}/{net}/{prefix:int}", guarded(ip_allocate), methods=["POST"]),
        Route("/ip/{container}", guarded(ip_lookup), methods=["GET"]),
        Route("/ip/{container}", guarded(ip_release), methods=["DELETE"]),
        Route("/ip/{container}/{address}", guarded(ip_claim), methods=["PUT"]),
        Route("/ip/{container}/{address}", guarded(ip_release), methods=["DELETE"]),
        Route("/peer/{name}", guarded(rmpeer), methods=["DELETE"]),
        Route("/peer", guarded(reset), methods=["DELETE"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


class ApiServer:
    """Serves ``build_app(router)`` on ``host:port`` until cancelled."""

    def __init__(self, router: Router, host: str, port: int) -> None:
        self.router = router
        self.host = host
        self.port = port

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        config = HypercornConfig()
        where = format_host_port(self.host, self.port)
        config.bind = [where]
        config.accesslog = None
        config.errorlog = logging.getLogger("meshrouter.api.http")
        config.graceful_timeout = 0.5
        app = build_app(self.router)
        async with trio.open_nursery() as nursery:
            try:
                binds = await nursery.start(
                    partial(serve, app, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve the API on {where}: {exc.strerror or exc}"
                ) from None
            bound = str(binds[0]).removeprefix("http://")
            log.info("API listening on http://%s", bound)
            task_status.started(bound)
