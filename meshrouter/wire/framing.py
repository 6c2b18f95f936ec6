"""Theory of operation: length-prefixed frames with a hard size limit.

A frame is a 4-byte big-endian length followed by that many body bytes, as in
Weave's protocol V2.  The decoder is incremental: feed it whatever the socket
returned (one byte or a megabyte) and it returns every frame body completed so
far.  It refuses a frame the moment its header announces more than
``max_frame`` bytes, before reading the body, and it copies input in pieces so
it never holds more than one header plus one maximum-size body: a peer cannot
make us allocate more than that by announcing or sending a huge frame.

After an error the decoder stays failed (the stream is out of step, so nothing
after the bad header can be trusted); the connection must be closed.
"""

from __future__ import annotations

from meshrouter.errors import ConfigError, FrameTooLargeError

FRAME_HEADER_SIZE = 4
# The default cap is sized to the largest legitimate message: the topology
# answer to a newcomer carries every peer record at once, and for 1,000 peers
# at the default limit of 200 connections it measures 6.2 MiB with IPv4
# addresses (about 1.0 million decoded objects, see codec.DEFAULT_MAX_OBJECTS);
# 10 MiB leaves room for long nicknames and IPv6 addresses.  Meshes beyond that
# need a larger --max-frame (and a newcomer's first answer then takes longer).
DEFAULT_MAX_FRAME = 10 * 1024 * 1024
LARGEST_ENCODABLE_FRAME = (1 << (8 * FRAME_HEADER_SIZE)) - 1


def check_max_frame(max_frame: int) -> int:
    """Validate a configured frame limit (it must fit in the 4-byte header)."""
    if isinstance(max_frame, bool) or not isinstance(max_frame, int):
        raise ConfigError(f"max frame size must be an integer, got {max_frame!r}")
    if not 1 <= max_frame <= LARGEST_ENCODABLE_FRAME:
        raise ConfigError(
            f"max frame size {max_frame} is outside 1..{LARGEST_ENCODABLE_FRAME} bytes"
        )
    return max_frame


def check_outgoing_frame_size(size: int, max_frame: int = DEFAULT_MAX_FRAME) -> None:
    """Refuse to send a frame body the receiver would refuse (FrameTooLargeError)."""
    if size > max_frame:
        raise FrameTooLargeError(
            f"refusing to send a frame of {size} bytes: the limit is {max_frame} bytes"
        )


def encode_frame(body: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Prefix ``body`` with its length; refuse bodies the receiver would refuse."""
    check_outgoing_frame_size(len(body), max_frame)
    return len(body).to_bytes(FRAME_HEADER_SIZE, "big") + body


class FrameDecoder:
    """Incremental, bounded decoder of length-prefixed frames."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._max_frame = check_max_frame(max_frame)
        self._header = bytearray()
        self._body = bytearray()
        self._body_len: int | None = None  # None while reading a header
        self._error: FrameTooLargeError | None = None

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame currently held (never > header + max_frame)."""
        return len(self._header) + len(self._body)

    @property
    def pending(self) -> tuple[int, int | None] | None:
        """``(bytes received, bytes announced)`` of the frame in progress, or None
        between frames.  ``announced`` is None while the header itself is partial.
        The connection shell names this in its reason when a frame never completes
        (a corrupted length prefix shows up as a frame that waits forever)."""
        if self._body_len is not None:
            return FRAME_HEADER_SIZE + len(self._body), FRAME_HEADER_SIZE + self._body_len
        if self._header:
            return len(self._header), None
        return None

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the bodies of all frames it completed, in order."""
        if self._error is not None:
            raise self._error
        frames: list[bytes] = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._body_len is None:
                if not self._header and end - pos >= FRAME_HEADER_SIZE:
                    # Fast path: the whole header is in this chunk.
                    length = int.from_bytes(view[pos : pos + FRAME_HEADER_SIZE], "big")
                    pos += FRAME_HEADER_SIZE
                else:
                    take = min(FRAME_HEADER_SIZE - len(self._header), end - pos)
                    self._header += view[pos : pos + take]
                    pos += take
                    if len(self._header) < FRAME_HEADER_SIZE:
                        break
                    length = int.from_bytes(self._header, "big")
                    self._header.clear()
                self._check_length(length)
                self._body_len = length
            if not self._body and end - pos >= self._body_len:
                # Fast path: the whole body is in this chunk; slice it, no buffering.
                frames.append(bytes(view[pos : pos + self._body_len]))
                pos += self._body_len
                self._body_len = None
                continue
            take = min(self._body_len - len(self._body), end - pos)
            self._body += view[pos : pos + take]
            pos += take
            if len(self._body) == self._body_len:
                frames.append(bytes(self._body))
                self._body.clear()
                self._body_len = None
        return frames

    def _check_length(self, length: int) -> None:
        if length > self._max_frame:
            self._error = FrameTooLargeError(
                f"the peer announced a frame of {length} bytes, more than the limit "
                f"of {self._max_frame} bytes"
            )
            raise self._error
