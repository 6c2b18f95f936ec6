"""The dial loop: dial every due target, within the connection limit.

The target table (dialing/targets.py) decides who is due and when to retry;
this shell starts one task per dial and sleeps until the next target is due
or ``wake()`` is called (a connection ended, the user connected, the topology
changed).  Discovered targets leave a reserve of slots (1/8 of the limit) for
newcomers and for the user's direct peers, so a mesh under a limit stays
joinable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from meshrouter.config import RouterConfig
from meshrouter.dialing.targets import TargetTable
from meshrouter.names import PeerName
from meshrouter.node.handshaking import describe_dial_error
from meshrouter.node.transport import Transport

StreamRunner = Callable[[trio.abc.Stream, str, Any], Awaitable[None]]
"""Runs a dialled stream to the end of its connection: ``(stream, address, token)``
where the token is what ``on_dial_started`` returned for the dial."""


class Dialer:
    """Dials due targets; owned by the Router, its tasks in the Router's nursery."""

    def __init__(
        self,
        *,
        config: RouterConfig,
        targets: TargetTable,
        transport: Transport,
        rng: random.Random,
        connected: Callable[[], set[PeerName]],
        outstanding: Callable[[], int],
        on_dial_started: Callable[[str], Any],
        on_dial_failed: Callable[[str, str, Any], None],
        run_stream: StreamRunner,
    ) -> None:
        self.config = config
        self.targets = targets
        self.transport = transport
        self.rng = rng
        self.connected = connected
        self.outstanding = outstanding
        self.on_dial_started = on_dial_started
        self.on_dial_failed = on_dial_failed
        self.run_stream = run_stream
        self._wakeup = trio.Event()

    def wake(self) -> None:
        """Look at the targets again now."""
        self._wakeup.set()

    async def run(self, nursery: trio.Nursery) -> None:
        limit = self.config.mesh.conn_limit
        discovery_room = limit - max(1, limit // 8)
        while True:
            self._wakeup = trio.Event()
            now = trio.current_time()
            self.targets.skip_connected(self.connected(), now)
            at_limit = False
            hard_limit = False
            for address in self.targets.due(now):
                outstanding = self.outstanding()
                if outstanding >= limit:
                    hard_limit = True  # wait until a connection ends (it wakes us)
                    break
                target = self.targets.get(address)
                if target is not None and not target.direct and outstanding >= discovery_room:
                    at_limit = True
                    continue
                self.targets.dial_started(address)
                nursery.start_soon(self._dial, address)
            if hard_limit:
                wake_at = None
            elif at_limit:
                wake_at = self.targets.next_wakeup(direct_only=True)
            else:
                wake_at = self.targets.next_wakeup()
            with trio.move_on_at(wake_at if wake_at is not None else math.inf):
                await self._wakeup.wait()

    async def _dial(self, address: str) -> None:
        token = self.on_dial_started(address)
        try:
            with trio.fail_after(self.config.timing.dial_timeout):
                stream = await self.transport.dial(address)
        except (OSError, trio.TooSlowError) as exc:
            reason = describe_dial_error(exc)
            self.on_dial_failed(address, reason, token)
            self.targets.dial_failed(
                address, trio.current_time(), f"dial failed: {reason}", self.rng
            )
            self.wake()
            return
        await self.run_stream(stream, address, token)
