"""How a service reaches the Router that owns it (for what the context lacks).

``ServiceContext`` lends the topology, gossip and datapath, but not the
connection table, the refusals or the ``status`` rows that metrics, the
status page, the picture and ``explain`` show.  Until the context carries them
(asked of the lead: a ``status`` field), the Router is found through a bound
method it lent -- ``stop_router`` is ``Router.stop`` -- and checked to be one;
callers cope with ``None`` (a context built by a test without a Router).
"""

from __future__ import annotations

from meshrouter.node.router import Router
from meshrouter.node.service import Service, ServiceContext


def router_of(context: ServiceContext) -> Router | None:
    """The Router owning ``context``, or None when it was not built by one."""
    owner = getattr(context.stop_router, "__self__", None)
    return owner if isinstance(owner, Router) else None


def service_named(context: ServiceContext, name: str) -> Service | None:
    """The router's service called ``name`` (``ipam``, ``dns``, ``dataplane``)."""
    return next((s for s in context.services() if s.name == name), None)
