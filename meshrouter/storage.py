"""Persisted state: small named blobs in the data directory, written atomically.

Every write goes to a temporary file in the same directory, is fsynced, then
renamed over the old file, and the directory is fsynced, so a crash (or kill -9)
leaves either the old or the new content, never a torn file.  The simulator uses
``MemoryStorage`` so that "restart with or without its data dir" is one argument.

Every file carries a version and a checksum: ``MRS`` + format version (1 byte) +
SHA-256 of the content (32 bytes) + the content.  A file whose checksum fails is
refused with a one-line error (a flipped byte must never load, gossip to the
whole cluster and leave every router waiting on a peer that does not exist).
Files written before the envelope existed (no ``MRS`` prefix) are read as they
are and get the envelope at their next write.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Protocol

from meshrouter.errors import ConfigError, StateFileError

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAGIC = b"MRS"
FORMAT_VERSION = 1
HEADER = len(MAGIC) + 1 + 32


def seal(data: bytes) -> bytes:
    """The bytes written for ``data``: magic, version, checksum, content."""
    return MAGIC + bytes([FORMAT_VERSION]) + hashlib.sha256(data).digest() + data


def unseal(blob: bytes, where: str) -> bytes:
    """The content of a file written by ``seal`` (or a legacy file, as it is)."""
    if not blob.startswith(MAGIC):
        return blob
    if len(blob) < HEADER:
        raise StateFileError(f"state file {where} is truncated; restore it or remove it")
    version = blob[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise StateFileError(
            f"state file {where} has format version {version}; this router reads "
            f"version {FORMAT_VERSION} (written by a newer meshrouter?)"
        )
    data = blob[HEADER:]
    if hashlib.sha256(data).digest() != blob[len(MAGIC) + 1 : HEADER]:
        raise StateFileError(
            f"state file {where} is corrupt (checksum mismatch); restore it from a "
            "backup or remove it to start without that state"
        )
    return data


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
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves no temporary behind
        raise
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
            return unseal(path.read_bytes(), str(path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None

    def save(self, key: str, data: bytes) -> None:
        _check_key(key)
        try:
            atomic_write(self.directory / key, seal(data))
        except OSError as exc:
            raise StateFileError(
                f"cannot write state file {self.directory / key}: {exc.strerror}"
            ) from None
