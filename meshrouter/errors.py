"""The one exception hierarchy of meshrouter.

Cores raise these; shells catch them at the edge of one connection, request or
command, log them with the peer or connection identity, and keep running.  Every
class says *why* something was refused, because Weave's users suffered most from
failures that said nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~6 ms per start of meshrouter-cni; mypy reads this as True
if TYPE_CHECKING:
    from typing import ClassVar


class MeshError(Exception):
    """Base class of every error meshrouter raises on purpose."""


class ConfigError(MeshError):
    """A command-line option, environment variable or config value is invalid."""


class StateFileError(MeshError):
    """A persisted state file exists but cannot be read; never silently reset."""


class ProtocolError(MeshError):
    """A remote peer sent something we refuse; it closes that one connection.

    `retryable` tells the dialer whether trying the same target again can help.
    """

    retryable: ClassVar[bool] = True


class VersionMismatchError(ProtocolError):
    """The two routers share no protocol version."""


class PasswordMismatchError(ProtocolError):
    """One side has a password (encryption) and the other has none."""


class WrongPasswordError(ProtocolError):
    """Both sides encrypt, but the passwords differ: the first sealed frame fails."""


class DecryptionError(ProtocolError):
    """A sealed frame failed authentication: tampered, replayed or reordered."""


class ClusterMismatchError(ProtocolError):
    """The remote router belongs to another cluster (different cluster ID)."""


class ConnectionToSelfError(ProtocolError):
    """We dialled ourselves (same peer name and UID).

    Retried with backoff, never marked failed for good: the claim comes from the
    remote before it proved anything (a plaintext listener can echo our own
    identity back), and a real self-dial costs one attempt per backoff period.
    """


class NameCollisionError(ProtocolError):
    """Another router uses our peer name with a different UID (retried with backoff:
    an unauthenticated claim must not stop us dialling an address for good)."""


class FrameTooLargeError(ProtocolError):
    """A frame's length prefix exceeds the configured maximum."""


class MalformedMessageError(ProtocolError):
    """Bytes that do not decode to a valid message of this protocol."""


class HandshakeTimeoutError(ProtocolError):
    """The remote did not complete the handshake in time."""


class HeartbeatTimeoutError(ProtocolError):
    """Nothing arrived on an established connection within the dead timeout."""


class ConnectionClosedError(ProtocolError):
    """The remote closed the connection (EOF) or the stream broke."""


class ConnectionRefusedByPolicyError(ProtocolError):
    """We refuse the connection locally: limit reached, duplicate, or shutting down."""


class RequestError(MeshError):
    """A request (API verb, CLI verb) cannot be met; the subclass says what *kind*
    of failure it is.  Cores and services raise these kinds and never an HTTP
    status: the API maps kinds to status codes in one table (``api/errors.py``).
    """


class InvalidRequestError(RequestError):
    """The request itself is wrong: bad syntax, out of range, not allowed."""


class NotFoundError(RequestError):
    """The request names something that does not exist (container, peer, record)."""


class ConflictError(RequestError):
    """The request contradicts current state (address taken, name in use)."""


class UnavailableError(RequestError):
    """The request is valid but cannot be met now (no space yet, no majority,
    timed out waiting, dependency down); retrying later may succeed."""


class TooLargeError(InvalidRequestError):
    """A request body or value exceeds its cap."""


class ApiError(MeshError):
    """A failure reported by the router's API to a client (``api/client.py``):
    carries the HTTP status the server answered with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ConnectionLimitError(ConnectionRefusedByPolicyError):
    """We are at the connection limit; the peer gets our topology, then a goodbye."""


class PeerGoodbyeError(ProtocolError):
    """The peer closed the connection and told us why."""


class IpamError(MeshError):
    """An address request cannot be met as asked.  The subclasses add the kind
    (conflict, invalid, unavailable, not found); the bare class means a broken
    invariant inside IPAM (answered as an internal error)."""


class IpamConflictError(IpamError, ConflictError):
    """An address request contradicts the ring (address taken, space frozen, left)."""


class IpamInvalidError(IpamError, InvalidRequestError):
    """An address request is malformed (outside the range, bad subnet)."""


class IpamUnavailableError(IpamError, UnavailableError):
    """An address request cannot be met now (no space reachable, timed out)."""


class IpamNotFoundError(IpamError, NotFoundError):
    """An address request names an unknown container or peer."""


class DemoError(MeshError):
    """``meshrouter demo`` cannot build or check its lab (a tool failed, a router
    did not start, a check timed out); the message says which step and why."""


class OpenFlowChannelError(UnavailableError):
    """The router's own OpenFlow connection to a bridge cannot be used (no socket,
    handshake refused, broken, timed out); the OVS shell falls back to ovs-ofctl."""


class OpenFlowError(UnavailableError):
    """The switch answered an OpenFlow request with an error (a refused flow_mod,
    a failed bundle commit); the message names the OpenFlow error and the flow."""
