"""msgpack encoding with hard caps on every decoded size.

Everything that crosses the wire or sits on disk is msgpack.  Decoding untrusted
bytes must never allocate more than the caps allow, and must only ever raise
``MalformedMessageError``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from meshrouter.errors import MalformedMessageError

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
MAX_CONTAINER_LEN = 1_000_000


def pack(obj: Any) -> bytes:
    """Encode ``obj`` as msgpack (bin type for bytes, no ext types)."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Decode msgpack bytes, refusing anything larger than ``max_size``."""
    if len(data) > max_size:
        raise MalformedMessageError(f"encoded value of {len(data)} bytes exceeds {max_size}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            use_list=True,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_array_len=min(max_size, MAX_CONTAINER_LEN),
            max_map_len=min(max_size, MAX_CONTAINER_LEN),
            max_ext_len=0,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        RecursionError,
    ) as exc:
        raise MalformedMessageError(f"undecodable msgpack: {exc}") from None


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """Return ``value`` if it has the expected type, else raise MalformedMessageError."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedMessageError(f"{what}: expected {kind}, got {type(value).__name__}")
    return value
