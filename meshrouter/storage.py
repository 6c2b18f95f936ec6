"""Persisted state: small named blobs in the data directory, written atomically.

Every write goes to a temporary file in the same directory, is fsynced, then
renamed over the old file, and the directory is fsynced, so a crash (or kill -9)
leaves either the old or the new content, never a torn file.  The simulator uses
``MemoryStorage`` so that "restart with or without its data dir" is one argument.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

from meshrouter.errors import ConfigError, StateFileError

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Storage(Protocol):
    """Where a router keeps state across restarts."""

    def load(self, key: str) -> bytes | None: ...

    def save(self, key: str, data: bytes) -> None: ...


def _check_key(key: str) -> None:
    if not _KEY.match(key):
        raise ValueError(f"invalid storage key {key!r}")


class MemoryStorage:
    """Storage held in a dict; survives a simulated restart if the object is reused."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def load(self, key: str) -> bytes | None:
        _check_key(key)
        return self.blobs.get(key)

    def save(self, key: str, data: bytes) -> None:
        _check_key(key)
        self.blobs[key] = bytes(data)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with write + fsync + rename + directory fsync."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileStorage:
    """One file per key under ``directory`` (created with mode 0700 if missing)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create data directory {directory}: {exc.strerror}") from None

    def load(self, key: str) -> bytes | None:
        _check_key(key)
        path = self.directory / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None

    def save(self, key: str, data: bytes) -> None:
        _check_key(key)
        try:
            atomic_write(self.directory / key, data)
        except OSError as exc:
            raise StateFileError(
                f"cannot write state file {self.directory / key}: {exc.strerror}"
            ) from None
