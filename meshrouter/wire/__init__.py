"""Sans-IO wire protocol: framing, handshake, encryption and message codec."""
