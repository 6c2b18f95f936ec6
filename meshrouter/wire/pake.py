"""Theory of operation: CPace over X25519, the password-authenticated key exchange.

Why a PAKE: with a plain Diffie-Hellman exchange plus a hash of the password in
the key derivation, anyone who opens one connection (or gets a router to dial
it) keeps a transcript on which every password guess costs one hash -- an
offline dictionary attack (issue 15, item 6; Weave had the same weakness).
CPace (draft-irtf-cfrg-cpace, suite CPACE-X25519-SHA512, symmetric setting)
binds the password into the exchange itself:

- Both ends derive the same *generator* ``g`` from the password: SHA-512 of a
  length-prefixed string holding the password, mapped to a Curve25519 point by
  Elligator 2 (``calculate_generator``).  Nobody knows the discrete logarithm
  of ``g`` with respect to anything else.
- Each end draws a fresh scalar ``y`` (the caller's X25519 private key) and
  sends ``Y = X25519(y, g)``.  Because X25519 clamps scalars to multiples of the
  cofactor, ``Y`` is a uniformly distributed point of the prime-order subgroup
  whatever the password: ``Y`` alone says nothing about it.
- Each end computes ``K = X25519(y, Y_remote)`` (refusing the all-zero result of
  a low-order point) and hashes ``K`` with both shares and both ends'
  associated data (their plaintext handshake headers) into the intermediate
  session key ``ISK``, ordering the two shares canonically ("oc" transcript)
  because both ends speak at once.

Someone who does not know the password can pick a generator for *one* guess,
and learns from the live connection whether that guess was right -- that is
all: testing another guess needs the other end's scalar for another generator,
i.e. solving Diffie-Hellman.  Every guess therefore costs one connection
against the accept throttle, never one hash on a recorded transcript.

The byte layouts (LEB128 length prefixes, zero padding to the hash block,
ordered concatenation) follow the draft exactly, so its published test vectors
check this module (tests/wire/test_pake.py).  X25519 itself is the
``cryptography`` package's; the only arithmetic done here is the Elligator 2
map (a few modular exponentiations, about 0.1 ms).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from meshrouter.errors import MalformedMessageError

FIELD_PRIME = 2**255 - 19
CURVE_A = 486662
ELLIGATOR_Z = 2  # the non-square of Curve25519's Elligator 2 map (RFC 9380)
FIELD_SIZE_BYTES = 32
FIELD_SIZE_BITS = 255
DSI = b"CPace255"
ISK_DSI = DSI + b"_ISK"
SHA512_BLOCK = 128  # H.s_in_bytes for SHA-512
SHARE_SIZE = FIELD_SIZE_BYTES
ISK_SIZE = 64
# The channel identifier: constant, so that a router of another program that
# happened to use CPace with the same password would still derive other keys.
CHANNEL_ID = b"meshrouter mesh handshake"


def prepend_len(data: bytes) -> bytes:
    """``data`` behind its length as LEB128 (7 bits per byte, low bits first)."""
    length = len(data)
    encoded = bytearray()
    while True:
        if length < 128:
            encoded.append(length)
        else:
            encoded.append((length & 0x7F) | 0x80)
        length >>= 7
        if length == 0:
            break
    return bytes(encoded) + data


def lv_cat(*parts: bytes) -> bytes:
    """Concatenation of the parts, each length-prefixed (prefix-free for hashing)."""
    return b"".join(prepend_len(part) for part in parts)


def o_cat(first: bytes, second: bytes) -> bytes:
    """b"oc" + the lexicographically larger string + the other (symmetric order)."""
    if first > second:
        return b"oc" + first + second
    return b"oc" + second + first


def generator_string(password: bytes, channel_id: bytes, sid: bytes) -> bytes:
    """The string hashed into the generator; the zero padding fills the first hash
    block, so the work per password does not depend on the password's length."""
    zero_pad = max(0, SHA512_BLOCK - 1 - len(prepend_len(password)) - len(prepend_len(DSI)))
    return lv_cat(DSI, password, bytes(zero_pad), channel_id, sid)


def elligator2(r: int) -> int:
    """Map a field element to the u-coordinate of a Curve25519 point (RFC 9380 map).

    ``v = -A / (1 + Z r^2)``; if ``v^3 + A v^2 + v`` is a square, ``u = v``,
    otherwise ``u = -v - A``.  ``1 + 2 r^2`` is never zero (-1/2 is not a square
    modulo 2^255 - 19), and ``v^3 + A v^2 + v`` is never zero (the curve has a
    single point of order 2), so the Legendre symbol is always +1 or -1.
    """
    p = FIELD_PRIME
    denominator = (1 + ELLIGATOR_Z * r * r) % p
    v = (-CURVE_A * pow(denominator, p - 2, p)) % p
    gv = (v * v * v + CURVE_A * v * v + v) % p
    if pow(gv, (p - 1) // 2, p) == 1:
        return v
    return (-v - CURVE_A) % p


def calculate_generator(password: bytes, channel_id: bytes = CHANNEL_ID, sid: bytes = b"") -> bytes:
    """The password's generator ``g`` as a 32-byte little-endian u-coordinate."""
    digest = hashlib.sha512(generator_string(password, channel_id, sid)).digest()
    encoded = bytearray(digest[:FIELD_SIZE_BYTES])
    encoded[-1] &= (1 << (FIELD_SIZE_BITS % 8)) - 1  # decodeUCoordinate: drop bit 255
    r = int.from_bytes(encoded, "little") % FIELD_PRIME
    return elligator2(r).to_bytes(FIELD_SIZE_BYTES, "little")


def _x25519(private_key: X25519PrivateKey, point: bytes, what: str) -> bytes:
    try:
        return private_key.exchange(X25519PublicKey.from_public_bytes(point))
    except ValueError:
        # cryptography refuses an all-zero result: a low-order point (G.I).
        raise MalformedMessageError(
            f"the {what} is a low-order point (the key exchange would have no secret)"
        ) from None


def public_share(private_key: X25519PrivateKey, generator: bytes) -> bytes:
    """``Y = X25519(y, g)``: what this end sends (32 bytes)."""
    return _x25519(private_key, generator, "password generator")


def intermediate_session_key(
    private_key: X25519PrivateKey,
    local_share: bytes,
    local_ad: bytes,
    remote_share: bytes,
    remote_ad: bytes,
    sid: bytes = b"",
) -> bytes:
    """``ISK`` of the symmetric setting: equal at both ends iff the passwords,
    both shares and both associated data agree.  Raises MalformedMessageError on a
    share of the wrong size, our own share reflected back, or a low-order point."""
    if not isinstance(remote_share, bytes) or len(remote_share) != SHARE_SIZE:
        raise MalformedMessageError(f"the remote's key share must be {SHARE_SIZE} bytes")
    if remote_share == local_share:
        raise MalformedMessageError(
            "the remote sent our own key share back (the connection is reflected to "
            "us, or something in between echoes our bytes)"
        )
    secret = _x25519(private_key, remote_share, "remote's key share")
    transcript = o_cat(lv_cat(local_share, local_ad), lv_cat(remote_share, remote_ad))
    return hashlib.sha512(lv_cat(ISK_DSI, sid, secret) + transcript).digest()
