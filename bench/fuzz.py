"""Fuzz every decoder that reads bytes from the network or from disk.

    python bench/fuzz.py [--per-decoder N] [--seed S] [--bomb]

Seeds are real: a small simulated mesh (the production Router, IPAM founding and
allocating) runs for a minute of simulated time while every frame body the
sessions decode is recorded, then the routers' state files are taken from their
storage.  Each decoder then gets N inputs (default 8,000; over 100,000 in all):
mutations of its seeds (bit flips, byte edits, insertions, deletions,
truncations, splices, and msgpack-aware edits that swap a sub-value for another
value of any type), random msgpack values and random bytes.

For every input a decoder must either accept it -- and then re-encoding what it
decoded must decode to the same value again -- or raise the protocol's own
error (a ``MeshError``: ``ProtocolError`` on the wire, ``StateFileError`` for
state files).  Anything else is a bug and is reported with one example.  The
exit status is 1 if any was found.

``--bomb`` also prints the cost of the issue-15 decoding bomb: a 10 MiB frame of
empty msgpack maps, as the frame body itself, as a topology gossip payload
(through ``PeerMap.decode``), and as that payload read item by item with
``codec.iter_array`` (what a channel decoder that checks each record's shape
as it goes pays), each in a fresh process (CPU time, wall time, peak RSS).
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshrouter.errors import MeshError
from meshrouter.wire import session as session_module
from meshrouter.wire.framing import FrameDecoder, encode_frame
from meshrouter.wire.messages import (
    BroadcastMsg,
    DigestMsg,
    GossipMsg,
    Message,
    UnicastMsg,
    decode_message,
    encode_message,
)


@dataclass
class Traffic:
    bodies: list[bytes] = field(default_factory=list)
    payloads: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    state_files: dict[str, list[bytes]] = field(default_factory=dict)
    routers: list[Any] = field(default_factory=list)


def capture(seed: int, hosts: int = 4, seconds: float = 60.0) -> Traffic:
    """Run a small simulated mesh and record what its sessions decode."""
    from sim.cluster import SimCluster
    from sim.runner import SimOptions as Options

    traffic = Traffic()
    original = session_module.decode_message

    def recording(body: bytes, *, max_size: int) -> Message:
        message = original(body, max_size=max_size)
        if len(traffic.bodies) < 5000:
            traffic.bodies.append(body)
        kind = {GossipMsg: "gossip", BroadcastMsg: "broadcast", UnicastMsg: "unicast",
                DigestMsg: "digest"}.get(type(message))
        if kind is not None:
            payload = message.digest if isinstance(message, DigestMsg) else message.payload
            traffic.payloads.setdefault((message.channel, kind), []).append(payload)
        return message

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            settings = Options().router_settings()
            cluster = SimCluster(nursery, seed=seed, router_settings=settings)
            await cluster.start_network()
            started = cluster.add_hosts(hosts)
            for host in started:
                await cluster.start(host, [started[0].address] if host.index else [])
            await trio.sleep(seconds / 2)
            await _allocate(cluster, 3 * hosts)
            await trio.sleep(seconds / 2)
            traffic.routers = cluster.routers()
            for host in started:
                for key, blob in host.storage.blobs.items():
                    traffic.state_files.setdefault(key, []).append(blob)
            nursery.cancel_scope.cancel()

    session_module.decode_message = recording  # type: ignore[assignment]
    try:
        trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        session_module.decode_message = original  # type: ignore[assignment]
    return traffic


async def _allocate(cluster: Any, count: int) -> None:
    try:
        from meshrouter.ipam.service import ipam_of
    except ImportError:
        return
    services = [s for s in (ipam_of(r) for r in cluster.routers()) if s is not None]
    if not services:
        return
    async with trio.open_nursery() as nursery:
        for i in range(count):
            service = services[i % len(services)]
            nursery.start_soon(_allocate_one, service, f"fuzz-{i}")


async def _allocate_one(service: Any, container: str) -> None:
    try:
        await service.allocate(container, None, 20.0)
    except MeshError:
        pass


# ----------------------------------------------------------------- mutations


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 3 else 8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice([0, 1, -1, 127, 128, 255, 256, 4095, 4096, 1 << 47, (1 << 48) - 1,
                           1 << 48, (1 << 63) - 1, (1 << 64) - 1, -(1 << 63)])
    if choice == 3:
        return rng.randrange(-(1 << 20), 1 << 20)
    if choice == 4:
        return rng.random() * 1e6
    if choice == 5:
        return "".join(rng.choice("ab:.0\u00e9\u2603 \x00\x1b") for _ in range(rng.randrange(12)))
    if choice == 6:
        return rng.randbytes(rng.randrange(40))
    if choice == 7:
        return "x" * rng.choice([0, 63, 64, 65, 255, 256, 513])
    if choice in (8, 9):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(8))]
    return {random_value(rng, 3): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _mutate_tree(value: Any, rng: random.Random) -> Any:
    """Replace, drop or wrap one randomly chosen node of a decoded value."""
    if isinstance(value, list) and value and rng.random() < 0.8:
        index = rng.randrange(len(value))
        copy = list(value)
        roll = rng.random()
        if roll < 0.1:
            del copy[index]
        elif roll < 0.2:
            copy.insert(index, random_value(rng))
        else:
            copy[index] = _mutate_tree(copy[index], rng)
        return copy
    if isinstance(value, dict) and value and rng.random() < 0.8:
        copy = dict(value)
        key = rng.choice(list(copy))
        if rng.random() < 0.15:
            del copy[key]
        else:
            copy[key] = _mutate_tree(copy[key], rng)
        return copy
    roll = rng.random()
    if roll < 0.2 and isinstance(value, int) and not isinstance(value, bool):
        return value + rng.choice([-1, 1, 1 << 16, -(1 << 32)])
    if roll < 0.3:
        return [value]
    return random_value(rng)


def mutate(seeds: list[bytes], rng: random.Random) -> bytes:
    if not seeds or rng.random() < 0.05:
        return rng.randbytes(rng.randrange(64)) if rng.random() < 0.5 else (
            msgpack.packb(random_value(rng), use_bin_type=True))
    data = bytearray(rng.choice(seeds))
    kind = rng.randrange(8)
    if kind == 0 and data:
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1 and data:
        data[rng.randrange(len(data))] = rng.choice([0x00, 0x7F, 0x80, 0x9F, 0xC0, 0xC1, 0xC4,
                                                     0xD9, 0xDC, 0xDD, 0xDF, 0xFF])
    elif kind == 2:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randrange(1, 9))
    elif kind == 3 and data:
        at = rng.randrange(len(data))
        del data[at : at + rng.randrange(1, 9)]
    elif kind == 4:
        del data[rng.randrange(len(data) + 1):]
    elif kind == 5:
        other = rng.choice(seeds)
        data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]
    else:
        try:
            tree = msgpack.unpackb(bytes(data), raw=False, strict_map_key=False)
            data = bytearray(msgpack.packb(_mutate_tree(tree, rng), use_bin_type=True))
        except Exception:
            data[rng.randrange(len(data) + 1):] = rng.randbytes(4)
    return bytes(data)


# ----------------------------------------------------------------- decoders


@dataclass
class Decoder:
    name: str
    decode: Callable[[bytes], Any]
    seeds: list[bytes]
    reencode: Callable[[Any], bytes] | None = None  # None: no encoder to check against
    same: Callable[[Any, Any], bool] = lambda a, b: a == b


@dataclass
class Result:
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    other: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    reencode_mismatch: int = 0


def _handshake_decoders() -> list[Decoder]:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from meshrouter.names import PeerName
    from meshrouter.wire.handshake import Handshake, HandshakeConfig
    from meshrouter.wire.identity import Identity, decode_identity, encode_identity

    def ident(name: int) -> Identity:
        return Identity(PeerName(name), f"n{name}", name, name * 7, name % 4096, "")

    def config(name: int, password: bytes | None) -> HandshakeConfig:
        key = X25519PrivateKey.from_private_bytes(bytes([name]) * 32) if password else None
        return HandshakeConfig(ident(name), password=password, private_key=key)

    decoders = []
    for password in (None, b"fuzzing password"):
        remote = Handshake(config(2, password))
        header = remote.start()
        local = Handshake(config(1, password))
        frame = remote.receive_data(local.start())

        def feed(data: bytes, password: bytes | None = password) -> Any:
            handshake = Handshake(config(1, password))
            handshake.start()
            step = max(1, len(data) // 3)
            for i in range(0, len(data), step):
                handshake.receive_data(data[i : i + step])
            return handshake.result.remote if handshake.done else None

        label = "encrypted" if password else "plain"
        decoders.append(Decoder(f"handshake ({label})", feed, [header + frame, header]))
    identities = [encode_identity(ident(n)) for n in (1, 2, 4095, 1 << 40)]
    decoders.append(Decoder("identity", lambda d: decode_identity(d, max_size=4096),
                            identities, encode_identity))
    return decoders


def _wire_decoders(traffic: Traffic) -> list[Decoder]:
    from meshrouter.wire.session import Session

    bodies = traffic.bodies[:2000]
    frames = [encode_frame(body) for body in bodies]

    def frames_of(data: bytes) -> list[bytes]:
        return FrameDecoder(1 << 16).feed(data)

    def session(data: bytes) -> list[Message]:
        return Session(None, 1 << 20).receive_data(data)

    return [
        Decoder("frames", frames_of, frames, lambda bs: b"".join(encode_frame(b) for b in bs)),
        Decoder("message", decode_message, bodies, encode_message),
        Decoder("session (plain)", session, frames,
                lambda ms: b"".join(encode_frame(encode_message(m)) for m in ms)),
    ]


def _channel_decoders(traffic: Traffic) -> list[Decoder]:
    decoders: list[Decoder] = []
    router = traffic.routers[0] if traffic.routers else None
    channels = getattr(getattr(router, "gossip", None), "_channels", {})
    for channel, gossiper in sorted(channels.items()):
        seeds = [p for kind in ("gossip", "broadcast")
                 for p in traffic.payloads.get((channel, kind), [])][:500]
        decoders.append(Decoder(f"{channel} payload", gossiper.decode, seeds,
                                lambda value: value.encode(),
                                lambda a, b: a.encode() == b.encode()))
    for channel, module, cls in (("dns", "meshrouter.dns.records", "DnsRecords"),
                                 ("endpoints", "meshrouter.endpoints.state", "EndpointSet")):
        if channel in channels:
            continue
        try:  # the simulated routers do not run this service yet: fuzz the codec alone
            data_class = getattr(__import__(module, fromlist=[cls]), cls)
        except (ImportError, AttributeError):
            continue
        decoders.append(Decoder(f"{channel} payload", data_class.decode,
                                [data_class().encode()], lambda value: value.encode(),
                                lambda a, b: a.encode() == b.encode()))
    unicast_seeds = traffic.payloads.get(("ipam", "unicast"), [])[:500]
    digest_seeds = traffic.payloads.get(("topology", "digest"), [])[:500]
    try:
        from meshrouter.ipam.messages import SpaceMessage
        decoders.append(Decoder("ipam unicast", SpaceMessage.decode, unicast_seeds,
                                lambda m: m.encode()))
    except ImportError:
        pass
    try:
        from meshrouter.topology.peer_map import decode_digest
        decoders.append(Decoder("topology digest", decode_digest, digest_seeds))
    except ImportError:
        pass
    dns_digests = traffic.payloads.get(("dns", "digest"), [])
    try:
        from meshrouter.dns.digest import decode_full
        decoders.append(Decoder("dns digest", decode_full, dns_digests[:500]))
    except ImportError:
        pass
    return decoders


def _state_decoders(traffic: Traffic) -> list[Decoder]:
    decoders: list[Decoder] = []
    files = traffic.state_files
    try:
        from meshrouter.ipam.address_range import AddressRange
        from meshrouter.ipam.persistence import load
        from sim.runner import SimOptions as Options

        space = AddressRange.parse(Options().ipalloc_range)
        decoders.append(Decoder("ipam state file", lambda b: load(b, space),
                                files.get("ipam", [])))
    except (ImportError, AttributeError):
        pass
    try:
        from meshrouter.codec import unpack

        decoders.append(Decoder("direct-peers file", unpack, files.get("direct-peers", [])))
    except ImportError:
        pass
    for key, attribute in (("dns", "dns"), ("endpoints", "endpoints")):
        router = traffic.routers[0] if traffic.routers else None
        service = router.service(attribute) if router is not None else None
        core = getattr(service, "core", None) or getattr(service, "table", None)
        if core is None or not hasattr(core, "load"):
            continue
        load = core.load
        takes_now = "now" in load.__code__.co_varnames[: load.__code__.co_argcount]
        decoders.append(Decoder(
            f"{key} state file",
            (lambda b, load=load: load(b, 0.0)) if takes_now else load,
            files.get(key, []),
        ))
    return decoders


def run_decoder(decoder: Decoder, count: int, rng: random.Random) -> Result:
    result = Result()
    for _ in range(count):
        data = mutate(decoder.seeds, rng)
        result.inputs += 1
        try:
            value = decoder.decode(data)
        except MeshError:
            result.refused += 1
            continue
        except Exception as exc:  # the point of the exercise: anything else is a bug
            name = type(exc).__name__
            result.other[name] += 1
            if name not in result.examples:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                result.examples[name] = (f"{exc!s:.120} at {where.filename}:{where.lineno} "
                                         f"input {data[:48].hex()}")
            continue
        result.accepted += 1
        if decoder.reencode is not None and value is not None:
            try:
                again = decoder.decode(decoder.reencode(value))
                if not decoder.same(again, value):
                    result.reencode_mismatch += 1
            except Exception as exc:
                result.reencode_mismatch += 1
                result.examples.setdefault("re-encode", f"{type(exc).__name__}: {exc!s:.120}")
    return result


# ----------------------------------------------------------------- bomb figures

BOMB = """
import resource, sys, time
from meshrouter.wire.framing import encode_frame
from meshrouter.wire.messages import GossipMsg, encode_message
from meshrouter.wire.session import Session
maps = b"\\x9a" + (b"\\xdd" + (1_000_000).to_bytes(4, "big") + b"\\x80" * 1_000_000) * 10
case = sys.argv[1]
body = maps if case == "frame" else encode_message(GossipMsg("topology", 1, maps))
data = encode_frame(body)
usage = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
try:
    messages = Session(None).receive_data(data)
    if case == "payload":
        from meshrouter.topology.peer_map import PeerMap
        PeerMap.decode(messages[0].payload)
    if case == "streamed":  # what a channel decoder gets from codec.iter_array
        from meshrouter.codec import iter_array
        # Per-record budget from the record's schema: 7 fields, 10,000 connections of 4.
        budget = 1 + 7 + 10_000 * 5
        for item in iter_array(messages[0].payload, what="peer map",
                               max_objects_per_item=budget):
            if not isinstance(item, list):
                raise ValueError(f"a peer record is a list, got {type(item).__name__}")
    outcome = "accepted"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:60]}"
wall = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
grown = (after.ru_maxrss - usage.ru_maxrss) / 1024
print(f"{len(data) / 2**20:.2f} MiB {case:8} cpu {cpu:5.2f} s wall {wall:5.2f} s "
      f"peak RSS +{grown:4.0f} MiB  {outcome}")
"""


def bomb_figures() -> None:
    root = Path(__file__).resolve().parent.parent
    print("decoding bomb (10 MiB of empty msgpack maps), each case in a fresh process:")
    for case in ("frame", "payload", "streamed"):
        subprocess.run([sys.executable, "-c", BOMB, case], cwd=root, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-decoder", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bomb", action="store_true")
    parser.add_argument("--bomb-only", action="store_true")
    args = parser.parse_args()
    if args.bomb_only:
        bomb_figures()
        return 0
    started = time.perf_counter()
    traffic = capture(args.seed)
    print(f"captured {len(traffic.bodies)} frame bodies, "
          f"{sum(map(len, traffic.payloads.values()))} payloads on "
          f"{sorted({c for c, _ in traffic.payloads})}, state files {sorted(traffic.state_files)} "
          f"({time.perf_counter() - started:.1f} s)")
    decoders = (_wire_decoders(traffic) + _handshake_decoders() + _channel_decoders(traffic)
                + _state_decoders(traffic))
    rng = random.Random(args.seed)
    total = Counter[str]()
    failed = False
    print(f"{'decoder':22} {'seeds':>6} {'inputs':>7} {'accepted':>8} {'refused':>8} "
          f"{'other':>6} {'re-enc':>6}  {'s':>5}")
    for decoder in decoders:
        t0 = time.perf_counter()
        result = run_decoder(decoder, args.per_decoder, rng)
        others = sum(result.other.values())
        failed |= bool(others or result.reencode_mismatch)
        total.update(inputs=result.inputs, accepted=result.accepted, refused=result.refused,
                     other=others, mismatch=result.reencode_mismatch)
        print(f"{decoder.name:22} {len(decoder.seeds):6} {result.inputs:7} {result.accepted:8} "
              f"{result.refused:8} {others:6} {result.reencode_mismatch:6}  "
              f"{time.perf_counter() - t0:5.1f}")
        for name, example in result.examples.items():
            print(f"    {name} x{result.other.get(name, 0)}: {example}")
    print(f"{'total':22} {'':6} {total['inputs']:7} {total['accepted']:8} {total['refused']:8} "
          f"{total['other']:6} {total['mismatch']:6}  {time.perf_counter() - started:5.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"exceptions other than the protocol's own: {total['other']}; "
          f"re-encoding mismatches: {total['mismatch']}; peak RSS {peak:.0f} MiB")
    if args.bomb:
        bomb_figures()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
