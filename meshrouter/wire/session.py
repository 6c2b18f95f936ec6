"""Theory of operation: messages over an established connection.

After the handshake every message travels as one frame: the message's msgpack
body, sealed with the session cipher when the connection is encrypted, behind a
4-byte length.  ``Session`` turns outgoing messages into stream bytes and
incoming stream bytes into messages, holding at most one incomplete frame.

Any bad input (an oversized frame, a frame that fails authentication, a body
that is not a valid message) raises a ``ProtocolError`` subclass and leaves the
session failed: the stream is out of step or under attack, so the only safe
reaction is to close this one connection; every later call raises the same error.
"""

from __future__ import annotations

from meshrouter.errors import ProtocolError
from meshrouter.wire.crypto import TAG_SIZE, SessionCipher
from meshrouter.wire.framing import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    check_outgoing_frame_size,
    encode_frame,
)
from meshrouter.wire.messages import Message, decode_message, encode_message


class Session:
    """Frames, optional encryption and the message codec, for one connection."""

    def __init__(self, cipher: SessionCipher | None, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._cipher = cipher
        self._decoder = FrameDecoder(max_frame)
        self._max_frame = self._decoder.max_frame
        self._error: ProtocolError | None = None

    @property
    def encrypted(self) -> bool:
        return self._cipher is not None

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def pending_frame(self) -> tuple[int, int | None] | None:
        """The incomplete incoming frame: ``(bytes received, bytes announced)``
        counting its 4-byte header, or None between frames (see FrameDecoder)."""
        return self._decoder.pending

    def encode(self, msg: Message) -> bytes:
        """Bytes to write to the stream for ``msg`` (FrameTooLargeError if too big)."""
        body = encode_message(msg)
        if self._cipher is not None:
            # Check the size before sealing: sealing consumes a nonce, and a
            # frame that is then never sent would put the peer's counter out of step.
            check_outgoing_frame_size(len(body) + TAG_SIZE, self._max_frame)
            body = self._cipher.seal(body)
        return encode_frame(body, self._max_frame)

    def receive_data(self, data: bytes) -> list[Message]:
        """Consume stream bytes; return the messages they completed, in order."""
        if self._error is not None:
            raise self._error
        try:
            messages: list[Message] = []
            for body in self._decoder.feed(data):
                if self._cipher is not None:
                    body = self._cipher.open(body)
                messages.append(decode_message(body, max_size=self._max_frame))
            return messages
        except ProtocolError as exc:
            self._error = exc
            raise
