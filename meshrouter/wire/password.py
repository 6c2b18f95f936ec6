"""Theory of operation: the mesh password -- making a strong one, spotting a weak one.

CPace (``pake.py``) means a recorded handshake gives nothing to guess against
offline, but every connection still tests one guess: a short password falls to
a patient attacker with enough connections.  So:

- ``keygen(path)`` writes a fresh random 256-bit secret as 64 hex digits and a
  newline (what ``--password-file`` reads: the CLI strips the newline) to a new
  file with mode 0600.  It is written to a temporary file in the same directory,
  fsynced, then linked into place, so the file appears whole or not at all and
  an existing file (someone's key) is never overwritten.  This is the only
  function of the wire package that touches the file system; the random bytes
  are an argument (cores never draw randomness themselves).
- ``password_warning(password)`` returns the sentence the CLI prints at start
  when the password is short (fewer than ``MIN_PASSWORD_BYTES``) or made of
  very few distinct bytes, else None.
"""

from __future__ import annotations

import os
from pathlib import Path

from meshrouter.errors import ConfigError

KEY_BYTES = 32  # 256 bits
MIN_PASSWORD_BYTES = 16
MIN_DISTINCT_BYTES = 6


def format_key(secret: bytes) -> bytes:
    """The key file's contents for ``secret``: lowercase hex and a newline."""
    if len(secret) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} random bytes, got {len(secret)}")
    return secret.hex().encode("ascii") + b"\n"


def keygen(path: Path, secret: bytes) -> None:
    """Write ``secret`` (``KEY_BYTES`` fresh random bytes: the caller draws them,
    e.g. ``secrets.token_bytes(KEY_BYTES)``) as a new key file at ``path``
    (mode 0600, never overwriting).

    Raises ConfigError with the reason when the file exists or cannot be written.
    """
    data = format_key(secret)
    directory = path.parent if str(path.parent) else Path(".")
    temporary = directory / f".{path.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create a key file in {directory}: {exc.strerror}") from None
    try:
        try:
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise ConfigError(
                f"{path} already exists; refusing to overwrite it (it may be the key "
                "other routers use): remove it first or choose another file"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot write the key file {path}: {exc.strerror}") from None
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        temporary.unlink(missing_ok=True)


def password_warning(password: bytes) -> str | None:
    """A warning to print at start for a weak password, or None."""
    problem: str | None = None
    if len(password) < MIN_PASSWORD_BYTES:
        problem = f"is only {len(password)} bytes long"
    elif len(set(password)) < MIN_DISTINCT_BYTES:
        problem = f"uses only {len(set(password))} distinct characters"
    if problem is None:
        return None
    return (
        f"warning: the mesh password {problem}. Recorded handshakes cannot be used to "
        "guess it offline, but every connection to the mesh port can try one guess; "
        "use a long random secret: meshrouter keygen FILE, then --password-file FILE "
        "on every router"
    )
