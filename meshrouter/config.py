"""Router configuration: one frozen dataclass, built by the CLI or the simulator.

Defaults follow Weave where its users had no complaint (ports, conn limit,
backoff) and are shorter where waiting hurt them; every timer is a field so that
tests and the simulator can run quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from meshrouter.addresses import (  # re-exported: the config's address syntax
    DEFAULT_API_PORT,
    DEFAULT_PORT,
    format_host_port,
    normalise_peer_address,
    parse_host_port,
)
from meshrouter.dialing.backoff import BackoffPolicy
from meshrouter.errors import ConfigError
from meshrouter.ipam.founding import FoundingMode, parse_founding
from meshrouter.names import PeerName

if TYPE_CHECKING:  # only a type here: client verbs import config and must start fast
    from meshrouter.dns.settings import DnsSettings



@dataclass(frozen=True)
class MeshSettings:
    """The control plane: where we listen, whom we dial, how many, how securely."""

    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    password: bytes | None = None
    conn_limit: int = 200
    initial_peers: tuple[str, ...] = ()
    discovery: bool = True
    cluster_id: str = ""
    max_frame: int = 10 * 1024 * 1024
    accept_burst: int = 20
    accept_refill_interval: float = 0.05
    max_inbound_handshakes: int | None = None
    """Inbound connections in handshake (throttle wait included); default: conn_limit."""
    max_handshakes_per_source: int = 16
    max_sockets: int | None = None
    """Descriptor budget for mesh sockets (the launcher derives it from RLIMIT_NOFILE)."""

    def __post_init__(self) -> None:
        if self.conn_limit < 1:
            raise ConfigError(f"--conn-limit must be at least 1, got {self.conn_limit}")
        if not 0 <= self.listen_port <= 65535:
            raise ConfigError(f"listen port {self.listen_port} is out of range")


@dataclass(frozen=True)
class TimingSettings:
    """Every timer of the mesh, so tests and the simulator can run quickly."""

    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 60.0
    handshake_timeout: float = 10.0
    dial_timeout: float = 10.0
    gossip_interval: float = 30.0
    route_coalesce: float = 0.1
    topology_batch: float = 1.0
    discovery_defer: float = 1.0
    limit_grace: float = 2.0
    repair_delay: float = 1.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ConfigError(
                f"heartbeat timeout ({self.heartbeat_timeout}s) must exceed the heartbeat "
                f"interval ({self.heartbeat_interval}s)"
            )


@dataclass(frozen=True)
class IpamSettings:
    """Address management; ``founding`` is parsed once, from ``--ipalloc-init``."""

    range: str = "10.32.0.0/12"
    founding: FoundingMode = field(default_factory=lambda: parse_founding(None, 0))
    reclaim_after: float = 600.0
    tick: float = 1.0

    def __post_init__(self) -> None:
        if self.reclaim_after <= 0:
            raise ConfigError("--ipalloc-reclaim-after must be greater than 0")

    @classmethod
    def parse(
        cls,
        *,
        range_text: str = "10.32.0.0/12",
        init: str | None = None,
        initial_peers: int = 0,
        reclaim_after: float = 600.0,
        tick: float = 1.0,
    ) -> IpamSettings:
        """From the command-line texts; the default founding is consensus among
        the initial peers (N = 1 + their number)."""
        return cls(
            range=range_text,
            founding=parse_founding(init, initial_peers),
            reclaim_after=reclaim_after,
            tick=tick,
        )


@dataclass(frozen=True)
class DataplaneSettings:
    """Container attach and the flow table (``endpoints/service/``)."""

    ipam_wait: float = 30.0
    """How long an attach waits for an address from IPAM."""
    flow_delay: float = 0.02
    """Changes arriving within this long of the first cost one flow-table computation."""


@dataclass(frozen=True)
class RouterConfig:
    """Everything a Router needs to know that is not an injected dependency,
    grouped by concern.  A feature that is off has no settings (``None``)."""

    name: PeerName
    nickname: str
    mesh: MeshSettings = field(default_factory=MeshSettings)
    timing: TimingSettings = field(default_factory=TimingSettings)
    ipam: IpamSettings | None = field(default_factory=IpamSettings)
    dataplane: DataplaneSettings | None = None
    dns: DnsSettings | None = None

    def __post_init__(self) -> None:
        if len(self.nickname) > 255:
            raise ConfigError("nickname is longer than 255 characters")

    @classmethod
    def from_flat(cls, name: PeerName, nickname: str, **settings: Any) -> RouterConfig:
        """Build from flat keyword settings named like the groups' fields (the
        simulator's and tests' overrides): ``conn_limit=16, heartbeat_timeout=3,
        ipam=False, ipalloc_range=..., ipalloc_init=...``.  Unknown names raise."""
        mesh_names = {f.name for f in fields(MeshSettings)}
        timing_names = {f.name for f in fields(TimingSettings)}
        mesh = {k: v for k, v in settings.items() if k in mesh_names}
        timing = {k: v for k, v in settings.items() if k in timing_names}
        ipam_keys = {
            "ipalloc_range": "range_text",
            "ipalloc_init": "init",
            "ipalloc_reclaim_after": "reclaim_after",
            "ipam_tick": "tick",
        }
        ipam = {ipam_keys[k]: v for k, v in settings.items() if k in ipam_keys}
        features = {"ipam", "dataplane", "dns"}
        unknown = set(settings) - mesh_names - timing_names - set(ipam_keys) - features
        if unknown:
            raise ConfigError(f"unknown router settings: {', '.join(sorted(unknown))}")
        mesh_settings = MeshSettings(**mesh)
        return cls(
            name=name,
            nickname=nickname,
            mesh=mesh_settings,
            timing=TimingSettings(**timing),
            ipam=IpamSettings.parse(initial_peers=len(mesh_settings.initial_peers), **ipam)
            if settings.get("ipam", True)
            else None,
            dataplane=settings.get("dataplane"),
            dns=settings.get("dns"),
        )


__all__ = [
    "DEFAULT_API_PORT",
    "DEFAULT_PORT",
    "DataplaneSettings",
    "IpamSettings",
    "MeshSettings",
    "RouterConfig",
    "TimingSettings",
    "format_host_port",
    "normalise_peer_address",
    "parse_host_port",
]
