"""Theory of operation: the fixed vocabulary of the CNI specification (1.1).

Error codes, the versions this plugin speaks, and ``CniError``, the one
exception the plugin turns into the spec's error JSON (``code``, ``msg``,
``details``) and a non-zero exit status.  Pure: no I/O.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~6 ms per start; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any

CNI_VERSION = "1.1.0"
# Results of 0.3.x/0.4.0 and 1.x differ only in the per-address "version" key.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
VERBS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

# Codes 1-99 are the spec's; 100 and above are this plugin's.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_DAMAGED = 51
ROUTER_REFUSED = 100  # the router refused the request (conflict: address or name taken)
ROUTER_FAILED = 101  # the router failed inside (HTTP 500): see its log


class CniError(Exception):
    """A failure the runtime is told about: spec ``code``, ``msg`` (what to do), ``details``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_tuple(text: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> (1, 0, 0); CniError(1) for anything that is not X.Y.Z."""
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 4 for p in parts):
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {text[:40]!r} is not a version "
                       f"(this plugin speaks {', '.join(SUPPORTED_VERSIONS)})")
    return int(parts[0]), int(parts[1]), int(parts[2])


def check_version(text: str) -> str:
    """``text`` if this plugin speaks it; otherwise CniError code 1 naming ours."""
    version_tuple(text)
    if text not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION,
                       f"cniVersion {text} is not supported by meshrouter-cni; use one of "
                       f"{', '.join(SUPPORTED_VERSIONS)}")
    return text


def version_answer() -> dict[str, Any]:
    """What ``VERSION`` prints."""
    return {"cniVersion": CNI_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}
