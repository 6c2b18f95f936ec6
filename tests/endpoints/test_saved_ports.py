"""The dataplane state file: round trip, and every damaged field refused by name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.endpoints.saved_ports import SavedPort, decode_state, encode_state
from meshrouter.errors import StateFileError

text = st.text(max_size=20)
ports = st.builds(SavedPort, text, text, text, text, text, st.integers(0, 128),
                  st.none() | st.integers(68, 65535), st.booleans())


@given(st.binary(max_size=64), st.lists(ports, max_size=5))
def test_decode_of_encode_is_identity(table: bytes, saved: list[SavedPort]) -> None:
    assert decode_state(encode_state(table, saved)) == (table, saved)


def test_exact_bytes_of_one_port() -> None:
    port = SavedPort("c1", "/proc/7/ns/net", "eth0", "02:00:00:00:00:01", "10.0.0.5", 24,
                     1450, True)
    expected = pack({"table": b"T", "ports": [["c1", "/proc/7/ns/net", "eth0",
                                                "02:00:00:00:00:01", "10.0.0.5", 24, 1450,
                                                True]]})
    assert encode_state(b"T", [port]) == expected


GOOD = ["c1", "ns", "eth0", "02:00:00:00:00:01", "10.0.0.5", 24, None, False]


@pytest.mark.parametrize(("index", "value", "message"), [
    (0, 7, "port container"),
    (4, None, "port ip"),
    (5, 129, "prefix"),
    (5, True, "prefix"),
    (6, "1500", "mtu"),
    (7, 1, "from_ipam"),
])
def test_a_bad_field_is_refused_by_name(index: int, value: object, message: str) -> None:
    row = list(GOOD)
    row[index] = value
    with pytest.raises(StateFileError, match=message):
        decode_state(pack({"table": b"", "ports": [row]}))


@pytest.mark.parametrize("blob", [
    b"\xc1",  # not msgpack
    pack([1, 2]),
    pack({"table": "not bytes", "ports": []}),
    pack({"table": b"", "ports": [GOOD[:7]]}),
    pack({"table": b""}),
])
def test_a_damaged_file_is_refused(blob: bytes) -> None:
    with pytest.raises(StateFileError, match="endpoints state is corrupt"):
        decode_state(blob)
