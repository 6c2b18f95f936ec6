"""Persisted state carries a version and a checksum (issue 15, item 4): any flipped
byte is refused with a one-line error; legacy files without the envelope load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import StateFileError
from meshrouter.storage import FileStorage


def test_file_layout_is_magic_version_sha256_content(tmp_path: Path) -> None:
    FileStorage(tmp_path).save("ipam", b"ring")
    raw = (tmp_path / "ipam").read_bytes()
    assert raw == b"MRS\x01" + hashlib.sha256(b"ring").digest() + b"ring"


@settings(max_examples=60, deadline=None)
@given(content=st.binary(min_size=1, max_size=200), data=st.data())
def test_every_single_flipped_byte_is_refused(tmp_path_factory: pytest.TempPathFactory,
                                              content: bytes, data: st.DataObject) -> None:
    directory = tmp_path_factory.mktemp("state")
    storage = FileStorage(directory)
    storage.save("ipam", content)
    raw = bytearray((directory / "ipam").read_bytes())
    index = data.draw(st.integers(3, len(raw) - 1))  # past the magic: see the legacy test
    raw[index] ^= data.draw(st.integers(1, 255))
    (directory / "ipam").write_bytes(bytes(raw))
    with pytest.raises(StateFileError) as info:
        storage.load("ipam")
    assert "ipam" in str(info.value) and "\n" not in str(info.value)


def test_round_trip_and_missing(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    assert storage.load("ipam") is None
    storage.save("ipam", b"")
    assert storage.load("ipam") == b""
    storage.save("ipam", b"\x00MRS")
    assert storage.load("ipam") == b"\x00MRS"


def test_newer_format_version_is_refused_with_why(tmp_path: Path) -> None:
    (tmp_path / "ipam").write_bytes(b"MRS\x02" + hashlib.sha256(b"x").digest() + b"x")
    with pytest.raises(StateFileError, match="format version 2"):
        FileStorage(tmp_path).load("ipam")


def test_truncated_envelope_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ipam").write_bytes(b"MRS\x01abc")
    with pytest.raises(StateFileError, match="truncated"):
        FileStorage(tmp_path).load("ipam")


def test_legacy_file_without_envelope_loads_and_is_sealed_on_next_write(tmp_path: Path) -> None:
    (tmp_path / "direct-peers").write_bytes(b"\x91\xa9host:6783")
    storage = FileStorage(tmp_path)
    assert storage.load("direct-peers") == b"\x91\xa9host:6783"
    storage.save("direct-peers", b"\x90")
    assert (tmp_path / "direct-peers").read_bytes().startswith(b"MRS\x01")
