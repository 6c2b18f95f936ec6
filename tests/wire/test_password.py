from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from meshrouter.errors import ConfigError
from meshrouter.wire.password import format_key, keygen, password_warning


def test_keygen_writes_256_random_bits_as_hex_with_mode_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        keygen(tmp_path / "mesh.key", bytes(range(32)))
    finally:
        os.umask(old_umask)
    path = tmp_path / "mesh.key"
    assert path.read_bytes() == bytes(range(32)).hex().encode() + b"\n"
    assert len(path.read_bytes().strip()) == 64  # 256 bits
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.key"]  # no temporary left


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    path = tmp_path / "mesh.key"
    path.write_bytes(b"someone's key\n")
    with pytest.raises(ConfigError, match="already exists; refusing to overwrite"):
        keygen(path, bytes(32))
    assert path.read_bytes() == b"someone's key\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.key"]


def test_keygen_into_a_missing_directory_says_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot create a key file"):
        keygen(tmp_path / "nope" / "mesh.key", bytes(32))


def test_format_key_needs_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 random bytes"):
        format_key(b"short")
    with pytest.raises(ValueError, match="32 random bytes"):
        keygen(tmp_path / "k", b"\x01" * 16)
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(
    ("password", "warned"),
    [
        (b"s3cret", "only 6 bytes long"),
        (b"x" * 15, "only 15 bytes long"),
        (b"abababababababababab", "only 2 distinct characters"),
        (b"correct horse battery staple", None),
        (bytes(range(32)).hex().encode(), None),
    ],
)
def test_short_or_repetitive_passwords_get_a_warning(password: bytes, warned: str | None) -> None:
    warning = password_warning(password)
    if warned is None:
        assert warning is None
    else:
        assert warning is not None and warned in warning
        assert "meshrouter keygen FILE" in warning
