"""The DNS Service: the records channel, the server, the API and the status section.

It plugs ``DnsCore`` into the router (gossip channel ``dns``, topology changes)
and runs ``DnsServer``.  Its own loop broadcasts our record changes as soon as
they are made (after writing them to the state file, so a peer never learns of
an edit we could forget), collects our old tombstones, and sweeps the records
of owners the topology no longer knows.

The dataplane service calls ``register``/``unregister_container`` when a
container with a name is attached or detached; ``POST /dns`` and ``DELETE
/dns/{name}`` are the ``dns-add``/``dns-remove`` verbs.

Where it listens.  ``--dns-listen`` is the whole choice when given (its bind
failure stops the router).  By default the host's own listener is
127.0.0.1:53, and the expose service (``meshrouter expose``) tells us the
host's overlay address through ``set_exposed``: we listen there as well, port
53, and that address is the nameserver ``status dns`` gives for containers
(a container on the overlay has no route to any other address of its host).
Default binds that fail are warnings in ``status dns``, retried every
maintenance round.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import trio

from meshrouter.errors import ConfigError, InvalidRequestError, NotFoundError
from meshrouter.names import format_peer_name
from meshrouter.node.service import (
    ApiRequest,
    ApiRoute,
    ServiceBase,
    ServiceContext,
    TopologyChange,
)

from .access import ClientFilter
from .core import DnsCore
from .gossiper import CHANNEL, DnsGossiper
from .names import format_ipv4, parse_ipv4, qualify
from .records import RecordKey
from .resolver import Answer, Resolver
from .server import DnsServer, DnsStats, UpstreamSource
from .settings import DnsSettings, Endpoint, container_nameserver, is_self, parse_endpoint
from .view import NameView

log = logging.getLogger(__name__)

STATE_KEY = "dns"
MAINTENANCE_INTERVAL = 10.0


class DnsService(ServiceBase):
    """One router's DNS (see the module docstring)."""

    name = "dns"

    def __init__(self, settings: DnsSettings | None = None, *,
                 local_addresses: Callable[[], set[str]] | None = None) -> None:
        self.settings = settings or DnsSettings()
        self.resolver = Resolver(self.settings.domain, ttl=self.settings.ttl,
                                 reverse_networks=self.settings.overlay_networks)
        self.stats = DnsStats()
        self.client_filter = ClientFilter(
            (*self.settings.overlay_networks, *self.settings.allow_networks))
        self._local_addresses = local_addresses or _host_addresses
        self.server: DnsServer | None = None
        """The primary listener (``--dns-listen``, else the host's 127.0.0.1:53)."""
        self.servers: dict[Endpoint, DnsServer] = {}
        """Every listener, the primary and the exposed address's."""
        self.exposed: str | None = None
        self.serving_error = ""
        self._scopes: dict[Endpoint, tuple[trio.CancelScope, trio.Event]] = {}
        self._bind_errors: dict[Endpoint, str] = {}
        self._listeners_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._wakeup = trio.Event()
        self._core: DnsCore | None = None
        self._upstreams: UpstreamSource | None = None
        self._topology_version = -1
        self._announce = False

    @property
    def core(self) -> DnsCore:
        if self._core is None:
            raise RuntimeError("DnsService used before attach()")
        return self._core

    # ------------------------------------------------------------ Service

    def attach(self, context: ServiceContext) -> None:
        super().attach(context)
        self._core = DnsCore(context.name, self.settings.domain,
                             tombstone_ttl=self.settings.tombstone_ttl)
        context.gossip.add_channel(CHANNEL, DnsGossiper(self._core, self.wake))

    def load(self) -> None:
        blob = self.context.storage.load(STATE_KEY)
        if blob is not None:
            self.core.load(blob, trio.current_time())
            self._announce = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        failure: ConfigError | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.settings.enabled:
                failure = await self._start_server(nursery)
            if failure is None:
                task_status.started()
                await self._maintain()
            nursery.cancel_scope.cancel()
        self._nursery = None
        if failure is not None:
            raise failure  # outside the nursery: the caller sees the ConfigError itself

    async def _start_server(self, nursery: trio.Nursery) -> ConfigError | None:
        """Start the primary listener and the exposed one; a bind failure is an
        error for an explicit ``--dns-listen`` (returned), else a warning shown
        by ``status dns``."""
        listen = self.settings.listen_endpoint()
        try:
            addresses = await trio.to_thread.run_sync(self._local_addresses)
        except OSError as exc:
            log.warning("dns: cannot list this host's addresses (%s); loopback only", exc)
            addresses = set()
        self.client_filter.set_local_addresses(addresses)
        explicit = [parse_endpoint(u, 53, what="--dns-upstream") for u in self.settings.upstreams]

        def ourselves(endpoint: Endpoint) -> bool:
            bound = [s.bound for s in self.servers.values() if s.bound] or [listen]
            return any(is_self(endpoint, b, addresses) for b in bound)

        self._upstreams = UpstreamSource(explicit, self.settings.resolv_conf, ourselves)
        try:
            self.server = await self._start_listener(nursery, listen)
        except OSError as exc:
            self.serving_error = f"cannot listen on {_endpoint_text(listen)}: {exc.strerror}"
            if self.settings.listen is not None:
                return ConfigError(f"--dns-listen: {self.serving_error}")
            log.warning("dns: %s; the host's DNS is not served (give --dns-listen or --no-dns)",
                        self.serving_error)
        await self._reconcile_listeners()
        return None

    async def _start_listener(self, nursery: trio.Nursery, endpoint: Endpoint) -> DnsServer:
        """A server on ``endpoint`` in its own cancel scope (OSError if it cannot bind)."""
        assert self._upstreams is not None
        server = DnsServer(
            self.resolver, self.view, self.context.rng, listen=endpoint,
            upstreams=self._upstreams.current, timeout=self.settings.upstream_timeout,
            client_filter=self.client_filter, stats=self.stats)
        scope = trio.CancelScope()
        done = trio.Event()

        async def serve(*, task_status: trio.TaskStatus[Endpoint] = trio.TASK_STATUS_IGNORED
                        ) -> None:
            with scope:
                try:
                    await server.run(task_status=task_status)
                finally:
                    if self.servers.get(endpoint) is server:
                        del self.servers[endpoint]
                        self._scopes.pop(endpoint, None)
                    done.set()

        self.servers[endpoint] = server
        self._scopes[endpoint] = (scope, done)
        await nursery.start(serve)
        return server

    def wants_host_address(self) -> bool:
        """Whether we would listen on an exposed address (DNS on, no ``--dns-listen``)."""
        return self.settings.enabled and self.settings.listen is None

    async def set_exposed(self, cidr: str | None) -> None:
        """The host's overlay address (``meshrouter expose``), or None (hidden).

        By default (no ``--dns-listen``) the server listens on it too, port 53,
        and ``status dns`` gives it as the nameserver for containers.  Returns
        once the listener is bound (or its failure is recorded)."""
        iface = ipaddress.ip_interface(cidr) if cidr else None
        self.exposed = str(iface.ip) if iface is not None else None
        self.client_filter.set_extra_networks([str(iface.network)] if iface is not None else [])
        await self._reconcile_listeners()

    async def _reconcile_listeners(self) -> None:
        """Listen on exactly the extra endpoints wanted now (the exposed
        address); a failed bind is recorded and retried at the next round."""
        nursery = self._nursery
        if nursery is None or not self.settings.enabled or self._upstreams is None:
            return
        async with self._listeners_lock:
            primary = self.settings.listen_endpoint()
            wanted = [e for e in self.settings.container_endpoints(self.exposed)
                      if e != primary]
            for endpoint, (scope, done) in list(self._scopes.items()):
                if endpoint != primary and endpoint not in wanted:
                    scope.cancel()
                    self._scopes.pop(endpoint, None)
                    self.servers.pop(endpoint, None)
                    self._bind_errors.pop(endpoint, None)
                    await done.wait()  # its sockets are closed when we return
            for endpoint in wanted:
                if endpoint in self.servers:
                    continue
                try:
                    await self._start_listener(nursery, endpoint)
                except OSError as exc:
                    error = f"cannot listen on {_endpoint_text(endpoint)}: {exc.strerror}"
                    if self._bind_errors.get(endpoint) != error:
                        log.warning("dns: %s; containers cannot use it (retried every %.0f s)",
                                    error, MAINTENANCE_INTERVAL)
                    self._bind_errors[endpoint] = error
                else:
                    self._bind_errors.pop(endpoint, None)
            for endpoint in list(self._bind_errors):
                if endpoint not in wanted:
                    del self._bind_errors[endpoint]

    async def _maintain(self) -> None:
        while True:
            self.flush()
            with trio.move_on_after(MAINTENANCE_INTERVAL):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = trio.current_time()
            self.core.collect(now)
            self.core.sweep_unknown(self._known, now)
            if self._bind_errors:
                await self._reconcile_listeners()

    def wake(self) -> None:
        self._wakeup.set()

    def flush(self) -> None:
        """Save our own records if they changed, then broadcast the change."""
        if self.core.dirty:
            self.context.storage.save(STATE_KEY, self.core.dump())
        delta = self.core.take_broadcast()
        if delta is not None:
            self.context.gossip.originate_broadcast(CHANNEL, delta)

    def view(self) -> NameView:
        """The answerable names as of the current topology.

        Reachability is re-read whenever the topology's version moved, not only
        at ``on_topology_changed`` (which comes after the router's coalesced
        route step): a query a moment after a peer became unreachable must not
        be sent to it.  An unchanged topology costs one comparison per query.
        """
        topology = self.context.topology
        if topology.version != self._topology_version:
            self._topology_version = topology.version
            self.core.set_reachable(frozenset(self.context.reachable()))
        return self.core.view()

    def _known(self, owner: Any) -> bool:
        return owner in self.context.topology

    def on_topology_changed(self, change: TopologyChange) -> None:
        reachable = change.reachable()
        self.core.set_reachable(reachable)
        if self._announce and len(reachable) > 1:
            # Back from a restart: peers that garbage-collected us dropped our
            # records, and the neighbours that still hold them relay nothing
            # (nothing is new to them), so say them once along our tree
            # instead of waiting for every peer's next digest exchange.
            self._announce = False
            own = self.core.own_records()
            if own is not None:
                self.context.gossip.originate_broadcast(CHANNEL, own)
        for peer in change.removed:
            # A peer that is already back (a quick restart) keeps the records
            # it has re-sent us in the meantime.
            if peer not in self.context.topology:
                self.core.forget_owner(peer)

    # ------------------------------------------------------------ verbs

    def register(self, container_id: str, name: str, address: str) -> str:
        """Publish ``name`` -> ``address`` for a container (dataplane attach)."""
        key = RecordKey(qualify(name, self.settings.domain), parse_ipv4(address), container_id)
        self.core.add(key, trio.current_time())
        self.flush()
        return key.name

    def unregister_container(self, container_id: str) -> list[str]:
        """Tombstone every record of a container (dataplane detach)."""
        gone = self.core.remove(lambda k: k.container == container_id, trio.current_time())
        self.flush()
        return sorted({k.name for k in gone})

    def remove(self, name: str, address: str | None = None) -> list[dict[str, str]]:
        fqdn = qualify(name, self.settings.domain)
        ip = parse_ipv4(address) if address else None
        gone = self.core.remove(
            lambda k: k.name == fqdn and (ip is None or k.address == ip), trio.current_time())
        if not gone:
            raise NotFoundError(f"this router publishes no record for {fqdn}"
                                + (f" with address {address}" if address else ""))
        self.flush()
        return [_describe(k) for k in gone]

    def lookup(self, name: str) -> list[str]:
        fqdn = qualify(name, self.settings.domain)
        return [format_ipv4(a) for a in self.view().addresses.get(fqdn, ())]

    def resolve_bytes(self, query: bytes) -> bytes | None:
        """Answer a query as the server would, without a socket (tests, tools)."""
        outcome = self.resolver.resolve(query, self.view(), self.context.rng)
        return outcome.data if isinstance(outcome, Answer) else None

    # ------------------------------------------------------------ API

    def api_routes(self) -> list[ApiRoute]:
        return [
            ApiRoute("POST", "/dns", self._api_add),
            ApiRoute("DELETE", "/dns/{name}", self._api_remove),
            ApiRoute("GET", "/dns/{name}", self._api_lookup),
            ApiRoute("GET", "/status/dns", self._api_status),
        ]

    async def _api_add(self, request: ApiRequest) -> Any:
        body = request.body
        name = body.get("name")
        address = body.get("address")
        container = body.get("container_id") or ""
        if not isinstance(name, str) or not isinstance(container, str):
            raise InvalidRequestError("POST /dns needs {\"name\": ..., \"address\": ... "
                                      "or \"container_id\": ...}")
        if address is None:
            if not container:
                raise InvalidRequestError("give an address or a container_id for the name")
            addresses = self._container_addresses(container)
            if not addresses:
                raise NotFoundError(f"container {container} has no address here; "
                                    "give the address")
        elif isinstance(address, str):
            addresses = [address]
        else:
            raise InvalidRequestError("address must be a string like 10.32.0.5")
        names = {self.register(container, name, a) for a in addresses}
        return {"name": names.pop(), "addresses": addresses}

    async def _api_remove(self, request: ApiRequest) -> Any:
        records = self.remove(request.path_params["name"], request.query.get("address"))
        return {"removed": len(records), "records": records}

    async def _api_lookup(self, request: ApiRequest) -> Any:
        name = request.path_params["name"]
        addresses = self.lookup(name)
        if not addresses:
            raise NotFoundError(f"no live record for {qualify(name, self.settings.domain)}")
        return {"name": qualify(name, self.settings.domain), "addresses": addresses}

    async def _api_status(self, request: ApiRequest) -> Any:
        return self.report()

    def _container_addresses(self, container: str) -> list[str]:
        """The container's addresses from a service that knows them (IPAM)."""
        ipam = self.context.service("ipam", "lookup")
        if ipam is not None:
            found = ipam.lookup(container)
            if isinstance(found, list):
                return [str(a).split("/")[0] for a in found]  # IPAM gives A.B.C.D/P
        return []

    # ------------------------------------------------------------ status

    def summary(self) -> dict[str, Any]:
        view = self.view()
        return {
            "domain": self.settings.domain,
            "listen": self._listen_text(),
            "nameserver": self.nameserver() or "",
            "names": len(view.addresses),
            "own_records": len(self.core.mine()),
            "responses": dict(sorted(self.stats.responses.items())),
        }

    def report(self) -> dict[str, Any]:
        upstreams = self._upstreams
        return {
            **self.summary(),
            "serving": self.server is not None and self.server.bound is not None,
            "error": self.serving_error,
            "listening": [_endpoint_text(e) for e in self._bound()],
            "exposed": self.exposed or "",
            "nameserver_error": self._nameserver_error(),
            "upstreams": [f"{h}:{p}" for h, p in upstreams.last] if upstreams else [],
            "upstream_error": upstreams.error if upstreams else "",
            "ttl": self.settings.ttl,
            "peer": format_peer_name(self.context.name),
            "records": self.core.status(),
            "counters": self.stats.as_dict(),
        }

    def _bound(self) -> list[Endpoint]:
        return [s.bound for s in self.servers.values() if s.bound is not None]

    def nameserver(self) -> str | None:
        """The address containers should use (their resolv.conf), or None."""
        return container_nameserver(self._bound(), self.exposed)

    def _nameserver_error(self) -> str:
        """Why containers have no nameserver, in one line ("" when they have one)."""
        if self.nameserver() is not None:
            return ""
        if not self.settings.enabled:
            return "DNS is not served (--no-dns)"
        if self._bind_errors:
            return "; ".join(self._bind_errors.values())
        if self.exposed is None and self.settings.listen is None:
            return "the host is not exposed on the overlay (`meshrouter expose`)"
        return "no listener on port 53 that containers can reach (see --dns-listen)"

    def _listen_text(self) -> str:
        if self.server is not None and self.server.bound is not None:
            host, port = self.server.bound
        elif not self.settings.enabled:
            return "disabled"
        else:
            host, port = self.settings.listen_endpoint()
        return _endpoint_text((host, port))


def _endpoint_text(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(key: RecordKey) -> dict[str, str]:
    return {"name": key.name, "address": format_ipv4(key.address), "container": key.container}


def _host_addresses() -> set[str]:
    """This host's interface addresses (blocking: run in a thread)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {str(msg.get_attr("IFA_ADDRESS")) for msg in ipr.get_addr()
                if msg.get_attr("IFA_ADDRESS")}
