"""Independent oracles for the wire: built from the documented layouts, never
from meshrouter's own encoders.

- ``mp``: a msgpack encoder written from the msgpack specification (smallest
  format for each value, as every conforming encoder chooses), used to build the
  expected bytes of handshake identities and messages;
- ``x25519``: the RFC 7748 Montgomery ladder in plain integers (slow, ~2 ms);
- CPace (draft-irtf-cfrg-cpace, X25519 + SHA-512, symmetric "oc" transcript)
  from the draft's definitions, checked against the draft's published test
  vectors in test_pake.py before anything else trusts it;
- ``session_keys``: HKDF-SHA256 over ISK as documented in ``wire/crypto.py``.

The only library primitives used are hashlib, HKDF and ChaCha20-Poly1305 from
``cryptography``: the code under test is the composition, not those.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

P = 2**255 - 19
A24 = 121665


# ----------------------------------------------------------------- msgpack by hand


def mp(value: Any) -> bytes:
    """msgpack encoding of ``value`` (None, bool, int, float, str, bytes, list, dict)."""
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 0x80:
            return bytes([value])
        if -32 <= value < 0:
            return struct.pack(">b", value)
        if value >= 0:
            for tag, fmt, limit in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16),
                                    (0xCE, ">I", 1 << 32), (0xCF, ">Q", 1 << 64)):
                if value < limit:
                    return bytes([tag]) + struct.pack(fmt, value)
        for tag, fmt, bits in ((0xD0, ">b", 8), (0xD1, ">h", 16), (0xD2, ">i", 32),
                               (0xD3, ">q", 64)):
            if value >= -(1 << (bits - 1)):
                return bytes([tag]) + struct.pack(fmt, value)
        raise ValueError("integer out of msgpack range")
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        n = len(raw)
        if n < 32:
            return bytes([0xA0 | n]) + raw
        if n < 1 << 8:
            return b"\xd9" + struct.pack(">B", n) + raw
        if n < 1 << 16:
            return b"\xda" + struct.pack(">H", n) + raw
        return b"\xdb" + struct.pack(">I", n) + raw
    if isinstance(value, bytes):
        n = len(value)
        if n < 1 << 8:
            return b"\xc4" + struct.pack(">B", n) + value
        if n < 1 << 16:
            return b"\xc5" + struct.pack(">H", n) + value
        return b"\xc6" + struct.pack(">I", n) + value
    if isinstance(value, list):
        n = len(value)
        head = bytes([0x90 | n]) if n < 16 else (
            b"\xdc" + struct.pack(">H", n) if n < 1 << 16 else b"\xdd" + struct.pack(">I", n))
        return head + b"".join(mp(item) for item in value)
    if isinstance(value, dict):
        n = len(value)
        head = bytes([0x80 | n]) if n < 16 else (
            b"\xde" + struct.pack(">H", n) if n < 1 << 16 else b"\xdf" + struct.pack(">I", n))
        return head + b"".join(mp(k) + mp(v) for k, v in value.items())
    raise TypeError(type(value))


def identity_map(ident: Any) -> dict[str, Any]:
    """The documented wire map of a handshake identity, keys in documented order."""
    return {"n": ident.name, "nn": ident.nickname, "u": ident.uid, "c": ident.conn_id,
            "s": ident.short_id, "cl": ident.cluster_id}


def frame(body: bytes) -> bytes:
    """A frame as documented: 4-byte big-endian length, then the body."""
    return struct.pack(">I", len(body)) + body


# ----------------------------------------------------------------- RFC 7748 X25519


def _clamp(k: bytes) -> int:
    b = bytearray(k)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return int.from_bytes(b, "little")


def x25519(k: bytes, u: bytes) -> bytes:
    """X25519(k, u) by the RFC 7748 ladder (section 5)."""
    scalar = _clamp(k)
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (scalar >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3 = (da + cb) ** 2 % P
        z3 = x1 * (da - cb) ** 2 % P
        x2 = aa * bb % P
        z2 = e * (aa + A24 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


# ----------------------------------------------------------------- CPace


def leb128_prefixed(data: bytes) -> bytes:
    n, out = len(data), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + data


def lv(*items: bytes) -> bytes:
    return b"".join(leb128_prefixed(item) for item in items)


def ordered(x: bytes, y: bytes) -> bytes:
    return b"oc" + (x + y if x > y else y + x)


def cpace_generator(prs: bytes, ci: bytes, sid: bytes) -> bytes:
    dsi = b"CPace255"
    pad = max(0, 128 - 1 - len(leb128_prefixed(prs)) - len(leb128_prefixed(dsi)))
    gen_str = lv(dsi, prs, b"\0" * pad, ci, sid)
    h = bytearray(hashlib.sha512(gen_str).digest()[:32])
    h[31] &= 0x7F
    r = int.from_bytes(h, "little") % P
    # Elligator 2, straight from the draft's reference code with Z = 2, A = 486662.
    a = 486662
    v = (-a * pow(1 + 2 * r * r, -1, P)) % P
    eps = pow((v**3 + a * v * v + v) % P, (P - 1) // 2, P)
    eps = -1 if eps == P - 1 else eps
    x = (eps * v - (1 - eps) * a * pow(2, -1, P)) % P
    return x.to_bytes(32, "little")


def cpace_isk(y: bytes, share: bytes, ad: bytes, remote: bytes, remote_ad: bytes,
              sid: bytes = b"") -> bytes:
    k = x25519(y, remote)
    transcript = ordered(lv(share, ad), lv(remote, remote_ad))
    return hashlib.sha512(lv(b"CPace255_ISK", sid, k) + transcript).digest()


MESH_CI = b"meshrouter mesh handshake"


def session_keys(isk: bytes, share: bytes, remote: bytes) -> tuple[bytes, bytes]:
    """(send key, receive key) for the end whose share is ``share``."""
    lower, higher = sorted((share, remote))
    okm = HKDF(hashes.SHA256(), 64, None, b"meshrouter session v2" + lower + higher).derive(isk)
    return (okm[:32], okm[32:]) if share == lower else (okm[32:], okm[:32])


def seal(key: bytes, counter: int, plaintext: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(bytes(4) + struct.pack(">Q", counter), plaintext, None)


def header(min_version: int, max_version: int, share: bytes | None) -> bytes:
    """The documented handshake header: magic, u8 min, u8 max, u8 flag, [share]."""
    fixed = struct.pack(">7sBBB", b"meshrtr", min_version, max_version, 0 if share is None else 1)
    return fixed + (share or b"")
