"""Gratuitous ARP for new endpoints, written straight into the containers' veths.

Why: a container that asked for an address before its host learned the
endpoint waits for Linux's ARP retry (``retrans_time``, 1 s by default) even
though the mesh is ready tens of milliseconds later -- that retry was most of
issue 9's attach-to-first-ping time.  A gratuitous ARP completes the waiting
(INCOMPLETE) neighbour entry at once; with the default ``arp_accept=0`` Linux
creates no entry from it, so containers that never asked learn nothing.

How: a frame sent on the *host* end of a container's veth (an AF_PACKET socket
in the switch's namespace) arrives on the container's ``eth0``.  This bypasses
the switch, so it needs no OpenFlow packet-out, no tool process and no flow,
and works the same for every port type (AF_PACKET, AF_XDP) and datapath.  If
the switch also sees the frame (an AF_PACKET port reads outgoing frames too),
the anti-spoofing flows drop it: its source MAC is not that port's.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
MAX_FRAMES = 4096
"""Frames per announcement (new endpoints x local ports); the rest are skipped."""


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"invalid MAC {mac!r}")
    return bytes(int(p, 16) for p in parts)


def garp_frame(mac: str, ip: str) -> bytes:
    """A broadcast gratuitous ARP request (sender = target = ``ip``) from ``mac``."""
    sha = mac_bytes(mac)
    spa = ipaddress.IPv4Address(ip).packed
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sha + spa + b"\x00" * 6 + spa
    return BROADCAST + sha + struct.pack("!H", ETH_P_ARP) + arp


def open_socket() -> socket.socket:
    """A send-only packet socket in the calling thread's namespace (the switch's).

    Kept for the datapath's life: closing a packet socket waits for an RCU grace
    period (milliseconds on a loaded host), so one socket per announcement, or
    worse per port, was most of its cost.  Protocol 0: it receives nothing.
    Non-blocking, so a full queue drops a courtesy frame instead of the loop."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setblocking(False)
    return sock


def send_garps(sock: socket.socket, ifnames: Iterable[str],
               endpoints: Iterable[tuple[str, str]]) -> int:
    """Send one gratuitous ARP per (mac, ip) on each of ``ifnames`` (names in the
    socket's namespace); returns the frames sent.  A vanished port is skipped."""
    frames = [garp_frame(mac, ip) for mac, ip in endpoints]
    sent = 0
    for ifname in ifnames:
        if sent + len(frames) > MAX_FRAMES:
            break
        try:
            for frame in frames:
                sock.sendto(frame, (ifname, ETH_P_ARP))
                sent += 1
        except OSError as exc:  # the port went away meanwhile: nobody to tell
            log.debug("gratuitous ARP on %s: %s", ifname, exc)
    return sent
