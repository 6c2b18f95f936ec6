"""How a service reaches the Router's status rows and its other services.

The context lends ``status`` (the rows behind ``status``/``report``, whose
``router`` is the Router itself); callers cope with ``None`` (a context built by
a test without a Router).
"""

from __future__ import annotations

from meshrouter.node.router import Router
from meshrouter.node.service import Service, ServiceContext


def router_of(context: ServiceContext) -> Router | None:
    """The Router owning ``context``, or None when it was not built by one."""
    owner = context.status.router if context.status is not None else None
    return owner if isinstance(owner, Router) else None


def service_named(context: ServiceContext, name: str) -> Service | None:
    """The router's service called ``name`` (``ipam``, ``dns``, ``dataplane``)."""
    return next((s for s in context.services() if s.name == name), None)
