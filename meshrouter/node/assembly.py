"""Builds a Router with its standard services from a RouterConfig.

The CLI (production) and the simulator call this one function, so they construct
the Router the same way; adding a feature as a service means one line here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.dns.service import DnsService
from meshrouter.endpoints.service import DataplaneService
from meshrouter.explain.service import ExplainService
from meshrouter.expose.service import ExposeService
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.service import IpamService
from meshrouter.metrics.service import MetricsService
from meshrouter.node.datapath import Datapath
from meshrouter.node.router import Router
from meshrouter.node.service import Service
from meshrouter.node.transport import Transport
from meshrouter.storage import Storage
from meshrouter.ui.service import UiService


def build_router(
    config: RouterConfig,
    *,
    transport: Transport,
    rng: random.Random,
    storage: Storage | None = None,
    datapath: Datapath | None = None,
    key_factory: Callable[[], X25519PrivateKey] | None = None,
    observer: Callable[[Router, str, str], None] | None = None,
) -> Router:
    """A Router for ``config`` with the services the config enables."""
    extra = {} if key_factory is None else {"key_factory": key_factory}
    return Router(
        config,
        transport=transport,
        rng=rng,
        storage=storage,
        datapath=datapath,
        services=standard_services(config),
        observer=observer,
        **extra,
    )


def standard_services(config: RouterConfig) -> list[Service]:
    """The features ``config`` enables, each one Service: one line per feature."""
    services: list[Service] = []
    if config.ipam is not None:
        services.append(
            IpamService(
                address_range=AddressRange.parse(config.ipam.range),
                mode=config.ipam.founding,
                reclaim_after=config.ipam.reclaim_after,
                tick=config.ipam.tick,
            )
        )
    if config.dataplane is not None:
        services.append(
            DataplaneService(
                ipam_wait=config.dataplane.ipam_wait, flow_delay=config.dataplane.flow_delay
            )
        )
    if config.dns is not None:  # enabled=False: records and gossip, no server
        services.append(DnsService(config.dns))
    if config.dataplane is not None:  # the host's overlay address: meshrouter expose / hide
        services.append(ExposeService())
    services.append(MetricsService())
    services.append(UiService())
    services.append(ExplainService())
    return services
