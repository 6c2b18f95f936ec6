"""msgpack encoding with hard caps on every decoded size -- and on decoding's cost.

Everything that crosses the wire or sits on disk is msgpack.  Decoding untrusted
bytes must never allocate more than the caps allow, and must only ever raise
``MalformedMessageError``.

Caps per container are not enough: one byte (``0x80``) decodes to an empty dict
of 64 bytes plus a list slot, so a 10 MiB body of empty maps used to build ten
million objects (700 MiB, seconds of CPU) before any shape check ran (issue 15,
item 7).  Three tools bound that cost while decoding:

- ``unpack`` counts *objects* -- every array or map plus its elements -- with
  msgpack's container hooks, and stops at ``max_objects`` (default
  ``DEFAULT_MAX_OBJECTS``).  Scalars cost at most a few times their encoded size,
  and the size is capped, so memory is bounded by the two caps together.  Inputs
  of at most ``UNCOUNTED_SIZE`` bytes skip the hooks: they cannot expand past a
  few MiB, and the hooks cost ~0.4 us per container.
- ``unpack_scalars`` decodes a message that is one array of scalar fields (the
  wire envelope): in one call whose caps and hooks let no container hold
  another (every array at most ``max_items``, no map), and when that refuses,
  field by field, each field's first byte checked before it is built, so a
  nested container is refused with its reason.
- ``iter_array`` yields the items of a top-level array one at a time under a
  per-item budget, so a caller can check each item's schema before the next one
  is built (for channel payloads that are lists of records).

``DEFAULT_MAX_OBJECTS`` is sized to the largest legitimate payload: the
topology answer to a newcomer in a 1,000-peer mesh at the default limit of 200
connections (all records at once) decodes to about 1.01 million objects (6.2
MiB); 1.5 million leaves room for IPv6 addresses.  Channels with smaller
schemas should pass a smaller ``max_objects``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgpack

from meshrouter.errors import MalformedMessageError

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
MAX_CONTAINER_LEN = 1_000_000
DEFAULT_MAX_OBJECTS = 1_500_000
UNCOUNTED_SIZE = 64 * 1024

# First bytes of msgpack arrays and maps (fixmap, fixarray, array16/32, map16/32).
_CONTAINER_FIRST_BYTES = frozenset([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    msgpack.ExtraData,
    msgpack.FormatError,
    msgpack.StackError,
    msgpack.OutOfData,
    RecursionError,
)


class _BudgetExceeded(Exception):
    """Raised by the counting hook; turned into MalformedMessageError."""


def pack(obj: Any) -> bytes:
    """Encode ``obj`` as msgpack (bin type for bytes, no ext types)."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _counting_hook(max_objects: int) -> Callable[[Any], Any]:
    """A list/map hook that counts each container and its elements."""
    remaining = max_objects

    def hook(container: Any) -> Any:
        nonlocal remaining
        remaining -= len(container) + 1
        if remaining < 0:
            raise _BudgetExceeded
        return container

    return hook


def _check_size(data: bytes, max_size: int) -> None:
    if len(data) > max_size:
        raise MalformedMessageError(f"encoded value of {len(data)} bytes exceeds {max_size}")


def unpack(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_objects: int = DEFAULT_MAX_OBJECTS
) -> Any:
    """Decode msgpack bytes, refusing more than ``max_size`` bytes or a value of
    more than ``max_objects`` containers-plus-elements (checked while decoding)."""
    _check_size(data, max_size)
    hooks: dict[str, Any] = {}
    if len(data) > UNCOUNTED_SIZE:
        hook = _counting_hook(max_objects)
        hooks = {"list_hook": hook, "object_hook": hook}
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
            **hooks,
        )
    except _BudgetExceeded:
        raise MalformedMessageError(
            f"value of {len(data)} bytes decodes to more than {max_objects} objects"
        ) from None
    except _DECODE_ERRORS as exc:
        raise MalformedMessageError(f"undecodable msgpack: {exc}") from None


def _unpacker(data: bytes, max_size: int, max_str_len: int, max_bin_len: int,
              max_container: int, hook: Callable[[Any], Any] | None = None) -> Any:
    hooks: dict[str, Any] = {} if hook is None else {"list_hook": hook, "object_hook": hook}
    unpacker = msgpack.Unpacker(
        None,
        raw=False,
        strict_map_key=False,
        use_list=True,
        max_buffer_size=max(len(data), 1),
        max_str_len=max_str_len,
        max_bin_len=max_bin_len,
        max_array_len=max_container,
        max_map_len=max_container,
        max_ext_len=0,
        **hooks,
    )
    unpacker.feed(data)
    return unpacker


def _array_header(unpacker: Any, max_items: int, what: str) -> int:
    try:
        count: int = unpacker.read_array_header()
    except _DECODE_ERRORS as exc:
        raise MalformedMessageError(f"{what} is not a msgpack array ({exc})") from None
    if count > max_items:
        raise MalformedMessageError(f"{what} has {count} items, more than {max_items}")
    return count


class _Nested(Exception):
    """Raised by the fast path's hooks: a container inside the envelope."""


def _refuse_nested(items: list[Any]) -> list[Any]:
    """List hook of the fast path: an array holding an array is refused when it
    completes, so at most one chain of nested arrays (each of at most
    ``max_items``, at most msgpack's stack depth long) is ever built."""
    for item in items:
        if type(item) is list:
            raise _Nested
    return items


def _refuse_map(_: Any) -> Any:
    raise _Nested


def unpack_scalars(
    data: bytes,
    *,
    what: str,
    max_size: int,
    max_items: int,
    max_str_len: int,
    max_bin_len: int,
) -> list[Any]:
    """Decode one array of scalars (nil, bool, int, float, str, bin) with at most
    ``max_items`` fields; a nested array or map is refused at its first byte, so
    nothing larger than one capped string or bin is ever built.

    A valid envelope is decoded by one ``unpackb`` call under the same caps,
    with every array capped at ``max_items``, maps at zero entries and hooks
    that refuse any container inside an array (a few thousand objects at most
    before the refusal).  Anything it refuses is decoded again field by field
    (``_unpack_scalars_checked``), which names the reason.  The field-by-field
    decoder alone cost ~30 us per message in the simulator, a new Unpacker each.
    """
    _check_size(data, max_size)
    try:
        fields = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            max_str_len=max_str_len,
            max_bin_len=max_bin_len,
            max_array_len=max_items,
            max_map_len=0,
            max_ext_len=0,
            list_hook=_refuse_nested,
            object_hook=_refuse_map,
        )
    except (_Nested, *_DECODE_ERRORS):
        fields = None
    if type(fields) is list:
        return fields
    return _unpack_scalars_checked(data, what, max_size, max_items, max_str_len, max_bin_len)


def _unpack_scalars_checked(data: bytes, what: str, max_size: int, max_items: int,
                            max_str_len: int, max_bin_len: int) -> list[Any]:
    """``unpack_scalars`` field by field: the array header and each field's
    first byte are checked before the field is built, and a refusal says why."""
    unpacker = _unpacker(data, max_size, max_str_len, max_bin_len, 0)
    count = _array_header(unpacker, max_items, what)
    fields: list[Any] = []
    try:
        for index in range(count):
            position = unpacker.tell()
            if position < len(data) and data[position] in _CONTAINER_FIRST_BYTES:
                raise MalformedMessageError(
                    f"{what}: field {index} is a nested array or map; every field is a scalar"
                )
            fields.append(unpacker.unpack())
    except _DECODE_ERRORS as exc:
        raise MalformedMessageError(f"{what}: undecodable msgpack: {exc}") from None
    if unpacker.tell() != len(data):
        raise MalformedMessageError(
            f"{what}: {len(data) - unpacker.tell()} bytes follow the end of the message"
        )
    return fields


def iter_array(
    data: bytes,
    *,
    what: str,
    max_size: int = DEFAULT_MAX_SIZE,
    max_items: int = MAX_CONTAINER_LEN,
    max_objects_per_item: int = DEFAULT_MAX_OBJECTS,
) -> Iterator[Any]:
    """Yield the items of a top-level array one at a time.

    Each item is decoded only when the caller asks for it, under its own object
    budget, so a caller that validates each item before taking the next stops a
    hostile payload at its first wrong item.  Raises MalformedMessageError
    (possibly after some items were yielded) on anything invalid, including bytes
    after the array.
    """
    _check_size(data, max_size)
    hook_budget = [max_objects_per_item]

    def hook(container: Any) -> Any:
        hook_budget[0] -= len(container) + 1
        if hook_budget[0] < 0:
            raise _BudgetExceeded
        return container

    unpacker = _unpacker(data, max_size, max_size, max_size,
                         min(max_size, MAX_CONTAINER_LEN), hook)
    count = _array_header(unpacker, max_items, what)
    for index in range(count):
        hook_budget[0] = max_objects_per_item
        try:
            item = unpacker.unpack()
        except _BudgetExceeded:
            raise MalformedMessageError(
                f"{what}: item {index} decodes to more than {max_objects_per_item} objects"
            ) from None
        except _DECODE_ERRORS as exc:
            raise MalformedMessageError(f"{what}: undecodable msgpack: {exc}") from None
        yield item
    if unpacker.tell() != len(data):
        raise MalformedMessageError(
            f"{what}: {len(data) - unpacker.tell()} bytes follow the end of the array"
        )


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """Return ``value`` if it has the expected type, else raise MalformedMessageError."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedMessageError(f"{what}: expected {kind}, got {type(value).__name__}")
    return value
