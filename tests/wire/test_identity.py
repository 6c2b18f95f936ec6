from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import ConfigError, MalformedMessageError, ProtocolError
from meshrouter.names import PeerName
from meshrouter.wire.identity import (
    Identity,
    connection_uid,
    decode_identity,
    encode_identity,
)

from .strategies import identities, msgpack_values
from .support import identity, identity_b

VALID: dict[str, Any] = {"n": 1, "nn": "a", "u": 2, "c": 3, "s": 4, "cl": ""}


def test_exact_wire_bytes() -> None:
    ident = Identity(PeerName(1), "a", 2, 3, 4, "")
    assert encode_identity(ident) == (
        b"\x86" b"\xa1n\x01" b"\xa2nn\xa1a" b"\xa1u\x02" b"\xa1c\x03" b"\xa1s\x04" b"\xa2cl\xa0"
    )


@settings(max_examples=200, deadline=None)
@given(identities)
def test_round_trip(ident: Identity) -> None:
    assert decode_identity(encode_identity(ident), max_size=4096) == ident


def test_connection_uid_is_the_same_at_both_ends() -> None:
    a, b = identity(conn_id=0b1100), identity_b(conn_id=0b1010)
    assert connection_uid(a, b) == connection_uid(b, a) == 0b0110


def test_unknown_keys_are_ignored() -> None:
    assert decode_identity(pack({**VALID, "future": [1, 2]}), max_size=4096) == Identity(
        PeerName(1), "a", 2, 3, 4, ""
    )


def test_describe() -> None:
    assert identity(name=0x0A0B0C0D0E0F, nickname="host1").describe() == "host1 (0a:0b:0c:0d:0e:0f)"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"n": 1 << 48}, "peer name"),
        ({"n": -1}, "peer name"),
        ({"n": True}, "peer name"),
        ({"n": "aa:bb"}, "peer name"),
        ({"nn": "x" * 256}, "nickname is 256 characters"),
        ({"nn": "evil\x1b[2J"}, "non-printable"),
        ({"nn": b"bytes"}, "nickname must be a string"),
        ({"u": -1}, "UID"),
        ({"c": -5}, "connection ID"),
        ({"s": 4096}, "short ID"),
        ({"s": 1.5}, "short ID"),
        ({"cl": "c" * 65}, "cluster ID is 65"),
        ({"cl": None}, "cluster ID must be a string"),
    ],
)
def test_invalid_fields_are_malformed(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode_identity(pack({**VALID, **changes}), max_size=4096)


@pytest.mark.parametrize("missing", sorted(VALID))
def test_missing_field_is_malformed(missing: str) -> None:
    fields = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(MalformedMessageError, match="lacks"):
        decode_identity(pack(fields), max_size=4096)


def test_non_map_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="not a map"):
        decode_identity(pack([1, 2, 3]), max_size=4096)


@pytest.mark.parametrize(
    "changes",
    [{"name": 1 << 48}, {"nickname": "x" * 256}, {"uid": -1}, {"short_id": 5000},
     {"cluster_id": "tab\there"}, {"conn_id": 1 << 64}],
)
def test_invalid_local_identity_is_a_config_error(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="invalid local identity"):
        identity(**changes)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(VALID)), msgpack_values))
def test_arbitrary_maps_raise_only_protocol_errors(changes: dict[str, Any]) -> None:
    try:
        decode_identity(pack({**VALID, **changes}), max_size=4096)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    try:
        decode_identity(data, max_size=4096)
    except ProtocolError:
        pass
