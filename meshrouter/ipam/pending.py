"""Requests that wait, and why: the reason is what ``status ipam`` shows and what
a request that times out answers, so it is refreshed on every tick."""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str, int, int]  # container, kind, subnet start, subnet end


@dataclass(slots=True)
class Pending:
    """A request that waits, and why (shown by ``status ipam``)."""

    container: str
    kind: str  # "allocate" or "claim"
    subnet: tuple[int, int]
    address: int | None
    since: float
    reason: str = ""


class PendingRequests(dict[Key, Pending]):
    """The waiting requests of one router, by key."""

    def wait(self, key: Key, container: str, kind: str, subnet: tuple[int, int],
             address: int | None, now: float, reason: str) -> None:
        existing = self.get(key)
        if existing is not None:
            existing.reason = reason
        else:
            self[key] = Pending(container, kind, subnet, address, now, reason)

    def cancel(self, container: str) -> None:
        for key in [k for k in self if k[0] == container]:
            del self[key]

    def met(self, container: str, address: int) -> None:
        """``address`` was given to ``container``: its requests it satisfies are done."""
        for key in [k for k in self if k[0] == container]:
            request = self[key]
            if request.subnet[0] <= address < request.subnet[1]:
                del self[key]

    def explain(self, reason: str) -> None:
        for request in self.values():
            request.reason = reason
