"""Theory of operation: what attach needs of the IPAM and DNS services, and the address step.

The dataplane service finds its collaborators by name at run time
(``ServiceContext.service``) and sees them only through these protocols, so
the endpoints package imports neither IPAM nor DNS.  ``take_address`` is the
address step of an attach: allocate one from IPAM, claim the one given, or --
on a router without IPAM -- use the given one as it is.  No trio, no I/O of
its own: it awaits only the collaborator it is handed.
"""

from __future__ import annotations

from typing import Protocol

from meshrouter.endpoints.requests import AttachRequest
from meshrouter.errors import InvalidRequestError

DEFAULT_PREFIX = 24


class AddressService(Protocol):
    """What attach needs of the IPAM service (``meshrouter.ipam.service``)."""

    async def allocate(self, container: str, subnet: str | None, wait: float) -> str: ...

    async def claim(self, container: str, address_text: str, wait: float) -> str: ...

    def release(self, container: str, address_text: str | None) -> list[str]: ...


class NameRegistry(Protocol):
    """What the dataplane needs of the DNS service."""

    def register(self, container_id: str, name: str, address: str) -> str: ...

    def unregister_container(self, container_id: str) -> list[str]: ...


async def take_address(ipam: AddressService | None, request: AttachRequest,
                       wait: float) -> tuple[str, int, bool]:
    """(address, prefix length, taken from IPAM) for ``request``."""
    if request.ip is None:
        if ipam is None:
            raise InvalidRequestError("this router has no IPAM: give the address (ip)")
        cidr = await ipam.allocate(request.container_id, None, wait)
        ip, _, prefix = cidr.partition("/")
        return ip, int(prefix or DEFAULT_PREFIX), True
    if ipam is None:
        return str(request.ip), request.prefix or DEFAULT_PREFIX, False
    cidr = await ipam.claim(request.container_id, str(request.ip), wait)
    _, _, ipam_prefix = cidr.partition("/")
    return str(request.ip), request.prefix or int(ipam_prefix or DEFAULT_PREFIX), True
