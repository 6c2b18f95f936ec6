"""Builds a Router with its standard services from a RouterConfig.

The CLI (production) and the simulator call this one function, so they construct
the Router the same way; adding a feature as a service means one line here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.node.datapath import Datapath
from meshrouter.node.router import Router
from meshrouter.node.transport import Transport
from meshrouter.storage import Storage


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
        observer=observer,
        **extra,
    )
