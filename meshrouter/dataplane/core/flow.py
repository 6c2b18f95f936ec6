"""Theory of operation: one OpenFlow flow as a structured, hashable value.

A ``Flow`` is (table, priority, ``Match``, actions, cookie).  It is structured
rather than a string so that the memory datapath can *evaluate* exactly the
flows that the OVS shell installs, and so that two tables can be diffed by
identity.  Two renderings serve the OVS shell:

* ``match_text()`` -- ``table=..,priority=..,<match>``: the identity OpenFlow
  uses for a strict modify/delete (``ovs-ofctl del-flows --strict``).  Two
  flows with equal ``key()`` have equal ``match_text()``.
* ``to_ofctl()`` -- the full line for ``ovs-ofctl -O OpenFlow13 --bundle
  add-flows/replace-flows``, ``cookie=0x..`` included.

MACs are lower-case ``aa:bb:..`` strings and IPv4 addresses dotted quads, as
``ovs-ofctl`` prints them, so a dump can be compared with what we rendered.
Match fields whose prerequisites are missing (``arp_*`` without ``arp``,
``nw_*`` without ``ip``) are refused at construction: OVS would refuse them at
install time, far from the bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from meshrouter.dataplane.core.pipeline import ETH_TYPE_ARP, ETH_TYPE_IP

# -- match --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """The fields a flow matches; None means wildcard.

    ``dl_dst_mask`` masks ``dl_dst`` (e.g. the group bit); ``tun_id`` is the VNI.
    """

    in_port: int | None = None
    dl_type: int | None = None
    dl_src: str | None = None
    dl_dst: str | None = None
    dl_dst_mask: str | None = None
    arp_op: int | None = None
    arp_spa: str | None = None
    arp_tpa: str | None = None
    arp_sha: str | None = None
    nw_src: str | None = None
    nw_dst: str | None = None
    tun_id: int | None = None
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        # Cached: a table of 10,000 flows is indexed by key on every apply.
        return self._hash

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((
            self.in_port, self.dl_type, self.dl_src, self.dl_dst, self.dl_dst_mask, self.arp_op,
            self.arp_spa, self.arp_tpa, self.arp_sha, self.nw_src, self.nw_dst, self.tun_id)))
        arp_fields = (self.arp_op, self.arp_spa, self.arp_tpa, self.arp_sha)
        if any(f is not None for f in arp_fields) and self.dl_type != ETH_TYPE_ARP:
            raise ValueError("arp_* match fields need dl_type=arp")
        if (self.nw_src is not None or self.nw_dst is not None) and self.dl_type != ETH_TYPE_IP:
            raise ValueError("nw_* match fields need dl_type=ip")
        if self.dl_dst_mask is not None and self.dl_dst is None:
            raise ValueError("dl_dst_mask needs dl_dst")

    def text(self) -> str:
        """The match in ``ovs-ofctl`` syntax (empty for match-all)."""
        parts: list[str] = []
        if self.dl_type == ETH_TYPE_ARP:
            parts.append("arp")
        elif self.dl_type == ETH_TYPE_IP:
            parts.append("ip")
        elif self.dl_type is not None:
            parts.append(f"dl_type=0x{self.dl_type:04x}")
        if self.in_port is not None:
            parts.append(f"in_port={self.in_port}")
        if self.tun_id is not None:
            parts.append(f"tun_id=0x{self.tun_id:x}")
        if self.dl_src is not None:
            parts.append(f"dl_src={self.dl_src}")
        if self.dl_dst is not None:
            mask = f"/{self.dl_dst_mask}" if self.dl_dst_mask is not None else ""
            parts.append(f"dl_dst={self.dl_dst}{mask}")
        if self.arp_op is not None:
            parts.append(f"arp_op={self.arp_op}")
        if self.arp_spa is not None:
            parts.append(f"arp_spa={self.arp_spa}")
        if self.arp_tpa is not None:
            parts.append(f"arp_tpa={self.arp_tpa}")
        if self.arp_sha is not None:
            parts.append(f"arp_sha={self.arp_sha}")
        if self.nw_src is not None:
            parts.append(f"nw_src={self.nw_src}")
        if self.nw_dst is not None:
            parts.append(f"nw_dst={self.nw_dst}")
        return ",".join(parts)

    def specificity(self) -> int:
        """How many fields are set (used to report overlapping flows)."""
        return sum(getattr(self, f.name) is not None for f in fields(self) if f.compare)


# -- actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """Send a copy out of ``port`` (OVS silently skips the packet's own in_port)."""

    port: int

    def text(self) -> str:
        return f"output:{self.port}"


@dataclass(frozen=True, slots=True)
class OutputInPort:
    """Send back out of the ingress port (the relay and ARP-reply hairpin, NOTES P2)."""

    def text(self) -> str:
        return "IN_PORT"


@dataclass(frozen=True, slots=True)
class ClearInPort:
    """Set in_port to 0 so a later ``output:TUNNEL`` is not skipped on a relayed packet."""

    def text(self) -> str:
        return "load:0->NXM_OF_IN_PORT[]"


@dataclass(frozen=True, slots=True)
class SetTunnelDst:
    """The underlay IPv4 address the tunnel port encapsulates toward."""

    ip: str

    def text(self) -> str:
        return f"set_field:{self.ip}->tun_dst"


@dataclass(frozen=True, slots=True)
class SetTunnelId:
    """The VNI (``tun_id``) the tunnel port encapsulates with."""

    vni: int

    def text(self) -> str:
        return f"set_field:0x{self.vni:x}->tun_id"


@dataclass(frozen=True, slots=True)
class DecTtl:
    """Decrement the IPv4 TTL; drop at zero.  Bounds any transient relay loop."""

    def text(self) -> str:
        return "dec_ttl"


@dataclass(frozen=True, slots=True)
class ArpReply:
    """Turn an ARP request into the reply "``ip`` is at ``mac``" in place.

    Rendered as the move/set_field sequence measured in the OVS lab; the
    output (normally ``OutputInPort``) is a separate action.
    """

    mac: str
    ip: str

    def text(self) -> str:
        return (
            "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
            f"set_field:{self.mac}->eth_src,"
            "set_field:2->arp_op,"
            "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
            "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
            f"set_field:{self.mac}->arp_sha,"
            f"set_field:{self.ip}->arp_spa"
        )


@dataclass(frozen=True, slots=True)
class GotoTable:
    """Continue in ``table`` (an OpenFlow 1.3 instruction: always the last action)."""

    table: int

    def text(self) -> str:
        return f"goto_table:{self.table}"


Action = (
    Output | OutputInPort | ClearInPort | SetTunnelDst | SetTunnelId | DecTtl | ArpReply | GotoTable
)


# -- flow ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow; ``key()`` (table, priority, match) is its identity in the switch."""

    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int
    _line: str = field(default="", init=False, repr=False, compare=False)
    _match: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, action in enumerate(self.actions):
            if isinstance(action, GotoTable) and i != len(self.actions) - 1:
                raise ValueError("goto_table must be the last action")
        if not 0 <= self.priority <= 0xFFFF:
            raise ValueError(f"priority {self.priority} out of range")
        if not 0 <= self.cookie < 1 << 64:
            raise ValueError("cookie must fit 64 bits")

    def key(self) -> tuple[int, int, Match]:
        """What OpenFlow identifies a flow by (a strict delete/modify target)."""
        return (self.table, self.priority, self.match)

    def match_text(self) -> str:
        """``table=T,priority=P[,match]`` for ``ovs-ofctl del-flows --strict`` (cached)."""
        if not self._match:
            match = self.match.text()
            head = f"table={self.table},priority={self.priority}"
            object.__setattr__(self, "_match", f"{head},{match}" if match else head)
        return self._match

    def actions_text(self) -> str:
        """The action list in ``ovs-ofctl`` syntax (``drop`` when empty)."""
        if not self.actions:
            return "drop"
        return ",".join(action.text() for action in self.actions)

    def to_ofctl(self) -> str:
        """The full line for ``ovs-ofctl -O OpenFlow13 --bundle add-flows`` (cached:
        memoised flows are rendered once however many applies they take part in)."""
        if not self._line:
            line = f"cookie=0x{self.cookie:x},{self.match_text()} actions={self.actions_text()}"
            object.__setattr__(self, "_line", line)
        return self._line


def sort_key(flow: Flow) -> tuple[int, int, str]:
    """Deterministic order for rendering a table: by table, priority (high first), match."""
    return (flow.table, -flow.priority, flow.match.text())
