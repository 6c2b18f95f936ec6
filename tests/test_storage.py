"""FileStorage and MemoryStorage: atomic replacement, failures that leave the old
state intact and say why, the data directory, keys.  (The checksum envelope has
its own tests in test_storage_checksum.py.)"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshrouter.errors import ConfigError, StateFileError
from meshrouter.storage import FileStorage, MemoryStorage, atomic_write, seal

# -- the data directory ----------------------------------------------------------------


def test_a_missing_data_directory_is_created_private_with_its_parents(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "data"
    storage = FileStorage(directory)
    assert directory.is_dir()
    assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0  # nobody else may read state
    storage.save("ipam", b"x")
    assert storage.load("ipam") == b"x"


def test_an_existing_data_directory_is_used_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "ipam").write_bytes(seal(b"kept"))
    assert FileStorage(tmp_path).load("ipam") == b"kept"


def test_a_data_directory_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"cannot create data directory {blocker / 'data'}"):
        FileStorage(blocker / "data")


# -- what is written ---------------------------------------------------------------------


def test_a_saved_file_is_private_and_replaces_the_old_one(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.save("ipam", b"first")
    storage.save("ipam", b"second, longer than the first")
    assert storage.load("ipam") == b"second, longer than the first"
    assert stat.S_IMODE((tmp_path / "ipam").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ipam"]  # no temporary left


def test_a_large_blob_is_written_whole(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 40_000  # 10 MB: more than one os.write may take
    FileStorage(tmp_path).save("big", blob)
    assert FileStorage(tmp_path).load("big") == blob


def test_a_write_the_system_takes_in_pieces_is_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    FileStorage(tmp_path).save("ipam", b"longer than one seven-byte piece")
    monkeypatch.undo()
    assert FileStorage(tmp_path).load("ipam") == b"longer than one seven-byte piece"


def test_keys_name_files_inside_the_directory_only(tmp_path: Path) -> None:
    for storage in (FileStorage(tmp_path), MemoryStorage()):
        for key in ("../escape", "a/b", "", ".hidden", "UPPER", "x" * 65, "sp ace"):
            with pytest.raises(ValueError, match="invalid storage key"):
                storage.save(key, b"x")
            with pytest.raises(ValueError, match="invalid storage key"):
                storage.load(key)
        storage.save("direct-peers", b"ok")
        storage.save("peer_name.v2", b"ok")
        storage.save("x" * 64, b"ok")
    assert not (tmp_path.parent / "escape").exists()


# -- atomicity: the order of the system calls ------------------------------------------------


def test_the_content_is_fsynced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    kinds: dict[int, str] = {}
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def spy_open(path: Any, flags: int, *args: Any) -> int:
        fd = real_open(path, flags, *args)
        kinds[fd] = "dir" if os.path.isdir(path) else "file"
        return fd

    def spy_fsync(fd: int) -> None:
        calls.append(f"fsync {kinds.get(fd, '?')}")
        real_fsync(fd)

    def spy_replace(src: Any, dst: Any) -> None:
        assert Path(src).parent == Path(dst).parent  # a rename within one file system
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    atomic_write(tmp_path / "state", b"content")
    assert calls == ["fsync file", "replace", "fsync dir"]
    assert (tmp_path / "state").read_bytes() == b"content"


# -- failures: the old state survives, and the error says which file and why ---------------


def failing_after(calls: int, real: Callable[..., Any], error: int) -> Callable[..., Any]:
    """``real`` for the first ``calls`` calls, then OSError(``error``)."""
    count = 0

    def wrapper(*args: Any) -> Any:
        nonlocal count
        count += 1
        if count > calls:
            raise OSError(error, os.strerror(error))
        return real(*args)

    return wrapper


@pytest.mark.parametrize(
    ("call", "after", "error"),
    [
        ("write", 0, errno.ENOSPC),  # the disk is full before a byte is written
        ("write", 1, errno.ENOSPC),  # ...or after the first chunk: a torn temporary
        ("fsync", 0, errno.EIO),
        ("replace", 0, errno.EACCES),
    ],
)
def test_a_failed_save_keeps_the_old_state_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, after: int, error: int
) -> None:
    storage = FileStorage(tmp_path)
    storage.save("ipam", b"old state")
    real = getattr(os, call)
    if call == "write":  # small chunks, so that "after the first chunk" is mid-file

        def chunked(fd: int, data: Any) -> int:
            written: int = real(fd, bytes(data[:7]))
            return written

        monkeypatch.setattr(os, "write", failing_after(after, chunked, error))
    else:
        monkeypatch.setattr(os, call, failing_after(after, real, error))
    with pytest.raises(StateFileError) as info:
        storage.save("ipam", b"new state, never complete")
    message = str(info.value)
    assert f"cannot write state file {tmp_path / 'ipam'}" in message
    assert os.strerror(error) in message and "\n" not in message
    monkeypatch.undo()
    assert storage.load("ipam") == b"old state"


def test_a_failed_save_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FileStorage(tmp_path)
    storage.save("ipam", b"old state")
    monkeypatch.setattr(os, "fsync", failing_after(0, os.fsync, errno.EIO))
    with pytest.raises(StateFileError):
        storage.save("ipam", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ipam"]


def test_an_unreadable_state_file_is_a_state_file_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "ipam").mkdir()  # something that is not a readable file
    with pytest.raises(StateFileError, match=f"cannot read state file {tmp_path / 'ipam'}: "):
        FileStorage(tmp_path).load("ipam")


def test_a_state_file_that_cannot_be_replaced_is_a_state_file_error(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    (tmp_path / "ipam").mkdir()
    (tmp_path / "ipam" / "inside").write_bytes(b"")  # a non-empty directory is in the way
    with pytest.raises(StateFileError, match=f"cannot write state file {tmp_path / 'ipam'}"):
        storage.save("ipam", b"x")


# -- MemoryStorage ------------------------------------------------------------------------------


def test_memory_storage_keeps_a_copy_of_what_was_saved() -> None:
    storage = MemoryStorage()
    assert storage.load("ipam") is None
    buffer = bytearray(b"abc")
    storage.save("ipam", buffer)  # type: ignore[arg-type]  # a caller's mutable buffer
    buffer[0] = ord("X")
    assert storage.load("ipam") == b"abc"
