"""Hypothesis strategies shared by the wire tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from meshrouter.names import PEER_NAME_MAX, PeerName
from meshrouter.wire.identity import Identity
from meshrouter.wire.messages import (
    BroadcastMsg,
    DigestMsg,
    GossipMsg,
    Heartbeat,
    Message,
    UnicastMsg,
)

peer_names = st.integers(min_value=0, max_value=PEER_NAME_MAX).map(PeerName)
channels = st.text(min_size=1, max_size=64)
payloads = st.binary(max_size=256)

messages: st.SearchStrategy[Message] = st.one_of(
    st.just(Heartbeat()),
    st.builds(GossipMsg, channels, peer_names, payloads),
    st.builds(UnicastMsg, channels, peer_names, peer_names, payloads),
    st.builds(BroadcastMsg, channels, peer_names, payloads, st.none() | payloads),
    st.builds(DigestMsg, channels, peer_names, payloads, st.booleans()),
)

printable = st.text(st.characters(categories=["L", "N", "P", "S"], include_characters=" "))
identities = st.builds(
    Identity,
    name=peer_names,
    nickname=printable.filter(lambda s: len(s) <= 255),
    uid=st.integers(min_value=0, max_value=(1 << 64) - 1),
    conn_id=st.integers(min_value=0, max_value=(1 << 64) - 1),
    short_id=st.integers(min_value=0, max_value=4095),
    cluster_id=printable.filter(lambda s: len(s) <= 64),
)

# Any msgpack-encodable value, to feed decoders well-formed but wrong structures.
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=80)
    | st.binary(max_size=80),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(
        st.text(max_size=3) | st.integers(min_value=-100, max_value=100), children, max_size=6
    ),
    max_leaves=20,
)
