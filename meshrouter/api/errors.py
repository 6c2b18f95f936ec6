"""The one table from error kinds to HTTP status codes.

Cores and services raise the kinds of ``meshrouter.errors``; only the API knows
HTTP.  The most specific kind wins (the table is searched in order), and any
other ``MeshError`` is an internal error (500).
"""

from __future__ import annotations

from meshrouter.errors import (
    ConfigError,
    ConflictError,
    InvalidRequestError,
    MeshError,
    NotFoundError,
    TooLargeError,
    UnavailableError,
)

STATUS_BY_KIND: tuple[tuple[type[MeshError], int], ...] = (
    (TooLargeError, 413),
    (InvalidRequestError, 400),
    (ConfigError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (UnavailableError, 503),
)


def status_for(exc: MeshError) -> int:
    """The HTTP status that answers a request which raised ``exc``."""
    for kind, status in STATUS_BY_KIND:
        if isinstance(exc, kind):
            return status
    return 500
