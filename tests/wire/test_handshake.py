from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import (
    ClusterMismatchError,
    ConfigError,
    ConnectionToSelfError,
    FrameTooLargeError,
    MalformedMessageError,
    MeshError,
    NameCollisionError,
    PasswordMismatchError,
    ProtocolError,
    VersionMismatchError,
    WrongPasswordError,
)
from meshrouter.wire.framing import encode_frame
from meshrouter.wire.handshake import (
    MAX_IDENTITY_FRAME,
    Handshake,
    HandshakeConfig,
)
from meshrouter.wire.identity import connection_uid, decode_identity, encode_identity
from meshrouter.wire.messages import (
    BroadcastMsg,
    DigestMsg,
    GossipMsg,
    Heartbeat,
    Message,
    UnicastMsg,
)

from . import oracle
from .strategies import msgpack_values
from .support import (
    NAME_A,
    NAME_B,
    PASSWORD,
    config,
    drive,
    drive_ok,
    identity,
    identity_b,
    private_key,
    share,
)

CHUNKINGS = [pytest.param(None, id="whole"), pytest.param(1, id="byte-by-byte")]
PLAIN_HEADER = b"meshrtr\x06\x06\x00"
SEALED_HEADER = b"meshrtr\x06\x06\x01"


def started(cfg: HandshakeConfig) -> Handshake:
    handshake = Handshake(cfg)
    handshake.start()
    return handshake




# -- successful handshakes --------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_two_handshakes_agree(chunk: int | None, password: bytes | None) -> None:
    a_ident, b_ident = identity(), identity_b()
    result_a, result_b = drive_ok(
        config(a_ident, password, key_seed=1), config(b_ident, password, key_seed=2), chunk
    )
    assert result_a.version == result_b.version == 6
    assert result_a.remote == b_ident
    assert result_b.remote == a_ident
    assert result_a.leftover == result_b.leftover == b""
    assert result_a.session.encrypted == result_b.session.encrypted == (password is not None)
    assert connection_uid(a_ident, result_a.remote) == connection_uid(b_ident, result_b.remote)


def test_highest_common_version_is_chosen() -> None:
    result_a, result_b = drive_ok(
        config(identity(), min_version=1, max_version=5),
        config(identity_b(), min_version=3, max_version=9),
    )
    assert result_a.version == result_b.version == 5


def test_empty_cluster_id_peers_with_any_cluster() -> None:
    result_a, _ = drive_ok(config(identity(cluster_id="")), config(identity_b(cluster_id="c1")))
    assert result_a.remote.cluster_id == "c1"
    drive_ok(config(identity(cluster_id="c1")), config(identity_b(cluster_id="c1")))


SAMPLE_MESSAGES: list[Message] = [
    Heartbeat(),
    GossipMsg("topology", NAME_A, b"\x01\x02"),
    UnicastMsg("ipam", NAME_B, NAME_A, b"x" * 1000),
    BroadcastMsg("dns", NAME_A, b""),
    DigestMsg("topology", NAME_B, b"digest", True),
]


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_session_messages_flow_both_ways_after_handshake(
    chunk: int | None, password: bytes | None
) -> None:
    result_a, result_b = drive_ok(
        config(identity(), password, key_seed=1), config(identity_b(), password, key_seed=2)
    )
    for sender, receiver in ((result_a, result_b), (result_b, result_a)):
        stream = b"".join(sender.session.encode(m) for m in SAMPLE_MESSAGES)
        if password is not None:
            assert b"topology" not in stream  # sealed, not cleartext
        received: list[Message] = []
        step = len(stream) if chunk is None else chunk
        for i in range(0, len(stream), step):
            received += receiver.session.receive_data(stream[i : i + step])
        assert received == SAMPLE_MESSAGES


@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_leftover_bytes_after_the_identity_frame_are_returned(password: bytes | None) -> None:
    a = Handshake(config(identity(), password, key_seed=1))
    b = Handshake(config(identity_b(), password, key_seed=2))
    header_a, header_b = a.start(), b.start()
    frame_b = b.receive_data(header_a)
    frame_a = a.receive_data(header_b)
    assert b.receive_data(frame_a) == b""
    assert b.done and not a.done
    # B's first session message arrives in the same read as B's identity frame:
    # the handshake must hand those bytes back untouched.
    first_message = b.result.session.encode(GossipMsg("c", NAME_B, b"early"))
    assert a.receive_data(frame_b + first_message) == b""
    assert a.done
    result = a.result
    assert result.leftover == first_message
    assert result.session.receive_data(result.leftover) == [GossipMsg("c", NAME_B, b"early")]


def test_bytes_fed_after_done_accumulate_in_leftover() -> None:
    a = Handshake(config(identity()))
    a.start()
    frame_b = encode_frame(encode_identity(identity_b()))
    a.receive_data(PLAIN_HEADER + frame_b + b"one")
    assert a.done
    assert a.receive_data(b"two") == b""
    assert a.result.leftover == b"onetwo"


def test_header_and_identity_in_one_read() -> None:
    """The remote's header and identity frame may arrive together: we still answer."""
    a = Handshake(config(identity()))
    a.start()
    frame_b = encode_frame(encode_identity(identity_b()))
    out = a.receive_data(PLAIN_HEADER + frame_b)
    assert out == oracle.frame(oracle.mp(oracle.identity_map(identity())))
    assert a.done
    assert a.result.remote == identity_b()


def test_failure_in_the_same_read_keeps_our_identity_frame_in_unsent() -> None:
    local = identity(cluster_id="ours")
    a = Handshake(config(local))
    a.start()
    frame_b = encode_frame(encode_identity(identity_b(cluster_id="theirs")))
    with pytest.raises(ClusterMismatchError):
        a.receive_data(PLAIN_HEADER + frame_b)
    assert a.unsent == oracle.frame(oracle.mp(oracle.identity_map(local)))


# -- refusals -------------------------------------------------------------------


def both_fail(
    a_cfg: HandshakeConfig, b_cfg: HandshakeConfig, chunk: int | None
) -> tuple[ProtocolError, ProtocolError]:
    out_a, out_b = drive(Handshake(a_cfg), Handshake(b_cfg), chunk)
    assert isinstance(out_a, ProtocolError), out_a
    assert isinstance(out_b, ProtocolError), out_b
    return out_a, out_b


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_version_mismatch_refused_on_both_sides(chunk: int | None) -> None:
    err_a, err_b = both_fail(
        config(identity(), min_version=1, max_version=1),
        config(identity_b(), min_version=2, max_version=3),
        chunk,
    )
    assert type(err_a) is VersionMismatchError
    assert type(err_b) is VersionMismatchError
    assert str(err_a) == (
        "no common protocol version: we speak versions 1..1, the remote speaks 2..3; "
        "this router is too old for the remote one: upgrade this router"
    )
    assert str(err_b) == (
        "no common protocol version: we speak versions 2..3, the remote speaks 1..1; "
        "the remote router is too old for this one: upgrade the remote router"
    )


@pytest.mark.parametrize("flag", [b"\x00", b"\x01"], ids=["plain", "encrypted"])
@pytest.mark.parametrize("old", [1, 2, 3, 4])
def test_a_router_of_an_older_protocol_is_refused_with_a_clear_message(
    flag: bytes, old: int
) -> None:
    """Protocol 1 (password hashed into the KDF), 2 (whole topology records,
    no per-link deltas), 3 (full digests, no buckets) and 4 (64-bit bucket
    fingerprints) are refused before anything else is read."""
    handshake = started(config(identity()))
    with pytest.raises(VersionMismatchError) as refused:
        handshake.receive_data(b"meshrtr" + bytes([old, old]) + flag)
    assert str(refused.value) == (
        f"no common protocol version: we speak versions 6..6, the remote speaks {old}..{old}; "
        "the remote router is too old for this one: upgrade the remote router"
    )


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_wrong_password_refused_on_both_sides(chunk: int | None) -> None:
    err_a, err_b = both_fail(
        config(identity(), b"password one", key_seed=1),
        config(identity_b(), b"password two", key_seed=2),
        chunk,
    )
    assert type(err_a) is WrongPasswordError
    assert type(err_b) is WrongPasswordError
    assert "the peer's password differs from ours" in str(err_a)


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("who_has_password", ["a", "b"])
def test_password_on_one_side_only_refused_on_both_sides(
    chunk: int | None, who_has_password: str
) -> None:
    a_pw = PASSWORD if who_has_password == "a" else None
    b_pw = PASSWORD if who_has_password == "b" else None
    err_a, err_b = both_fail(
        config(identity(), a_pw, key_seed=1), config(identity_b(), b_pw, key_seed=2), chunk
    )
    assert type(err_a) is PasswordMismatchError
    assert type(err_b) is PasswordMismatchError
    with_pw, without_pw = (err_a, err_b) if who_has_password == "a" else (err_b, err_a)
    assert str(with_pw).startswith("we have a password (encryption on) but the remote router")
    assert str(without_pw).startswith("the remote router has a password (encryption on) but we")


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_different_cluster_refused_on_both_sides(
    chunk: int | None, password: bytes | None
) -> None:
    err_a, err_b = both_fail(
        config(identity(cluster_id="cluster-a"), password, key_seed=1),
        config(identity_b(cluster_id="cluster-b"), password, key_seed=2),
        chunk,
    )
    assert type(err_a) is ClusterMismatchError
    assert type(err_b) is ClusterMismatchError
    for err in (err_a, err_b):
        assert "'cluster-a'" in str(err) and "'cluster-b'" in str(err)
        assert "reset its data directory" in str(err)
    assert str(err_a).startswith(
        "the remote router beta (02:00:00:00:00:0b) belongs to cluster 'cluster-b' "
        "but we belong to cluster 'cluster-a'"
    )


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_connection_to_self_refused_on_both_sides(
    chunk: int | None, password: bytes | None
) -> None:
    # Dialler and acceptor inside one process: same name and UID, new conn IDs and keys.
    err_a, err_b = both_fail(
        config(identity(conn_id=1), password, key_seed=1),
        config(identity(conn_id=2), password, key_seed=2),
        chunk,
    )
    assert type(err_a) is ConnectionToSelfError
    assert type(err_b) is ConnectionToSelfError
    assert err_a.retryable  # an unauthenticated claim never fails a target for good
    assert "connected to ourselves" in str(err_a)


def test_reflected_plain_connection_is_a_connection_to_self() -> None:
    handshake = Handshake(config(identity()))
    header = handshake.start()
    frame = handshake.receive_data(header)
    with pytest.raises(ConnectionToSelfError):
        handshake.receive_data(frame)


def test_reflected_encrypted_connection_is_refused() -> None:
    handshake = Handshake(config(identity(), PASSWORD))
    header = handshake.start()
    with pytest.raises(MalformedMessageError, match="our own key share"):
        handshake.receive_data(header)


@pytest.mark.parametrize("chunk", CHUNKINGS)
@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_same_name_different_uid_refused_on_both_sides(
    chunk: int | None, password: bytes | None
) -> None:
    err_a, err_b = both_fail(
        config(identity(uid=1), password, key_seed=1),
        config(identity(uid=2, nickname="clone"), password, key_seed=2),
        chunk,
    )
    assert type(err_a) is NameCollisionError
    assert type(err_b) is NameCollisionError
    assert err_a.retryable  # an unauthenticated claim never fails a target for good
    assert str(err_a).startswith(
        "the remote router clone (02:00:00:00:00:0a) uses our peer name 02:00:00:00:00:0a "
        "with a different UID (0x2, ours is 0x1)"
    )


def test_oversize_identity_frame_refused_as_soon_as_announced() -> None:
    handshake = started(config(identity()))
    handshake.receive_data(PLAIN_HEADER)
    with pytest.raises(FrameTooLargeError, match="4097 bytes"):
        handshake.receive_data((MAX_IDENTITY_FRAME + 1).to_bytes(4, "big"))


def test_oversize_identity_frame_refused_when_encrypted() -> None:
    handshake = started(config(identity(), PASSWORD, key_seed=1))
    handshake.receive_data(SEALED_HEADER + share(2))
    with pytest.raises(FrameTooLargeError):
        handshake.receive_data(b"\xff\xff\xff\xff")


def test_buffered_bytes_are_bounded_by_header_plus_identity_frame() -> None:
    handshake = started(config(identity()))
    assert handshake.receive_data(PLAIN_HEADER[:5]) == b""
    assert handshake.buffered == 5
    handshake.receive_data(PLAIN_HEADER[5:] + MAX_IDENTITY_FRAME.to_bytes(4, "big"))
    handshake.receive_data(b"\x00" * (MAX_IDENTITY_FRAME - 1))
    assert handshake.buffered == MAX_IDENTITY_FRAME - 1


def test_identity_frame_at_the_size_limit_is_read() -> None:
    body = pack({"n": NAME_B, "nn": "b", "u": 2, "c": 3, "s": 4, "cl": "", "pad": b"x" * 4000})
    assert len(body) <= MAX_IDENTITY_FRAME
    handshake = started(config(identity()))
    handshake.receive_data(PLAIN_HEADER + encode_frame(body))
    assert handshake.done


VALID_IDENTITY: dict[str, Any] = {"n": NAME_B, "nn": "b", "u": 2, "c": 3, "s": 4, "cl": ""}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (encode_frame(b""), "undecodable msgpack"),
        (encode_frame(b"\xc1"), "undecodable msgpack"),
        (encode_frame(pack([1, 2])), "not a map"),
        (encode_frame(pack({**VALID_IDENTITY, "n": "name"})), "peer name"),
        (encode_frame(pack({**VALID_IDENTITY, "nn": "n" * 300})), "nickname"),
        (encode_frame(pack({**VALID_IDENTITY, "u": -1})), "UID"),
        (encode_frame(pack({**VALID_IDENTITY, "s": 4096})), "short ID"),
        (encode_frame(pack({**VALID_IDENTITY, "cl": 7})), "cluster ID"),
        (encode_frame(pack({"n": NAME_B})), "lacks"),
        (encode_frame(pack(VALID_IDENTITY) + b"\x00"), "undecodable msgpack"),
    ],
)
def test_malformed_identity_refused(frame: bytes, reason: str) -> None:
    handshake = started(config(identity()))
    with pytest.raises(MalformedMessageError, match=reason):
        handshake.receive_data(PLAIN_HEADER + frame)


def test_malformed_identity_inside_a_valid_seal_is_refused() -> None:
    """With the right password, a sealed but malformed identity is malformed, not a bad password."""
    handshake = Handshake(config(identity(), PASSWORD, key_seed=1))
    our_header = handshake.start()
    scalar_b = bytes([2]) * 32
    share_b = oracle.x25519(scalar_b, oracle.cpace_generator(PASSWORD, oracle.MESH_CI, b""))
    handshake.receive_data(SEALED_HEADER + share_b)
    isk = oracle.cpace_isk(scalar_b, share_b, SEALED_HEADER, our_header[10:], our_header[:10])
    send_b, _ = oracle.session_keys(isk, share_b, our_header[10:])
    body = oracle.mp({**VALID_IDENTITY, "s": -1})
    with pytest.raises(MalformedMessageError, match="short ID"):
        handshake.receive_data(oracle.frame(oracle.seal(send_b, 0, body)))


def test_short_sealed_identity_frame_is_malformed() -> None:
    handshake = started(config(identity(), PASSWORD, key_seed=1))
    handshake.receive_data(SEALED_HEADER + share(2))
    with pytest.raises(MalformedMessageError, match="authentication tag"):
        handshake.receive_data(encode_frame(b"short"))


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", MalformedMessageError, "not a meshrouter peer: it sent b'GET / H'"),
        (b"weave\x01\x02", MalformedMessageError, "Weave Net router"),
        (b"meshrtr\x03\x01\x00", MalformedMessageError, "empty protocol version range 3..1"),
        (b"meshrtr\x06\x06\x02", MalformedMessageError, "encryption flag is 2"),
        (SEALED_HEADER + bytes(32), PasswordMismatchError, "remote router has a password"),
    ],
)
def test_bad_headers_refused(data: bytes, error: type[ProtocolError], reason: str) -> None:
    handshake = started(config(identity()))
    with pytest.raises(error, match=reason):
        handshake.receive_data(data)


def test_low_order_public_key_refused() -> None:
    handshake = started(config(identity(), PASSWORD))
    with pytest.raises(MalformedMessageError, match="low-order"):
        handshake.receive_data(SEALED_HEADER + bytes(32))


def test_magic_is_checked_before_the_whole_header_arrives() -> None:
    handshake = started(config(identity()))
    assert handshake.receive_data(b"meshrt") == b""
    with pytest.raises(MalformedMessageError, match="not a meshrouter peer"):
        handshake.receive_data(b"X")


def test_a_failed_handshake_stays_failed() -> None:
    handshake = started(config(identity()))
    with pytest.raises(MalformedMessageError) as first:
        handshake.receive_data(b"garbage!")
    with pytest.raises(MalformedMessageError) as again:
        handshake.receive_data(PLAIN_HEADER)
    assert again.value is first.value
    assert not handshake.done


# -- misuse and configuration ----------------------------------------------------


def test_result_before_done_raises() -> None:
    handshake = started(config(identity()))
    with pytest.raises(MeshError, match="not done"):
        handshake.result  # noqa: B018


def test_receive_before_start_and_double_start_raise() -> None:
    handshake = Handshake(config(identity()))
    with pytest.raises(MeshError, match="start"):
        handshake.receive_data(PLAIN_HEADER)
    handshake.start()
    with pytest.raises(MeshError, match="already"):
        handshake.start()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"password": PASSWORD}, "needs a fresh X25519 private key"),
        ({"private_key": private_key(1)}, "without a password"),
        ({"password": b"", "private_key": private_key(1)}, "non-empty"),
        ({"min_version": 0}, "version range"),
        ({"min_version": 3, "max_version": 2}, "version range"),
        ({"max_version": 256}, "version range"),
        ({"max_frame": 0}, "max frame size"),
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        HandshakeConfig(identity(), **kwargs)


# -- arbitrary input ---------------------------------------------------------------


def _feed_all(handshake: Handshake, data: bytes, cuts: list[int]) -> None:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    try:
        for start, end in itertools.pairwise(points):
            handshake.receive_data(data[start:end])
            assert handshake.buffered <= 10 + 32 + MAX_IDENTITY_FRAME
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
    prefix=st.sampled_from(
        [b"", PLAIN_HEADER, SEALED_HEADER, SEALED_HEADER + b"\x09" * 32]
    ),
    password=st.sampled_from([None, PASSWORD]),
)
def test_arbitrary_bytes_raise_only_protocol_errors(
    data: bytes, cuts: list[int], prefix: bytes, password: bytes | None
) -> None:
    _feed_all(started(config(identity(), password)), prefix + data, cuts)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(sorted(VALID_IDENTITY)), msgpack_values),
    tail=st.binary(max_size=20),
    cuts=st.lists(st.integers(min_value=0), max_size=4),
)
def test_arbitrary_identity_maps_raise_only_protocol_errors(
    fields: dict[str, Any], tail: bytes, cuts: list[int]
) -> None:
    frame = encode_frame(pack({**VALID_IDENTITY, **fields}))
    handshake = started(config(identity()))
    _feed_all(handshake, PLAIN_HEADER + frame + tail, cuts)
    if handshake.done:
        assert handshake.result.leftover == tail
        remote = handshake.result.remote
        # Decoded successfully: re-encoding gives the same value (and the
        # fields the decoder kept are exactly the ones that were sent).
        assert decode_identity(encode_identity(remote), max_size=MAX_IDENTITY_FRAME) == remote
        merged = {**VALID_IDENTITY, **fields}
        assert (remote.name, remote.nickname, remote.uid, remote.conn_id, remote.short_id,
                remote.cluster_id) == tuple(merged[k] for k in ("n", "nn", "u", "c", "s", "cl"))


def test_rewritten_header_in_transit_breaks_the_keys() -> None:
    """A man in the middle who changes a header byte (e.g. the version range)
    leaves the two ends with different session keys, so the identity frame fails."""
    import pytest as _pytest
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey as _Key

    from meshrouter.errors import WrongPasswordError as _Wrong
    from meshrouter.wire.handshake import Handshake as _Handshake
    from meshrouter.wire.handshake import HandshakeConfig as _Config
    from meshrouter.wire.identity import Identity as _Identity

    def make(name: int, max_version: int) -> _Handshake:
        identity = _Identity(name=name, nickname="n", uid=name, conn_id=name, short_id=1,
                             cluster_id="")  # type: ignore[arg-type]
        return _Handshake(_Config(identity=identity, password=b"pw", private_key=_Key.generate(),
                                  max_version=max_version))

    a, b = make(1, 7), make(2, 6)
    a_header, b_header = a.start(), b.start()
    forged = bytearray(a_header)
    forged[8] = 6  # the max-version byte of a's header, rewritten in transit
    b_reply = b.receive_data(bytes(forged))
    a_reply = a.receive_data(b_header)
    with _pytest.raises(_Wrong):
        b.receive_data(a_reply)
    with _pytest.raises(_Wrong):
        a.receive_data(b_reply)
