"""CPace (wire/pake.py) against the draft's published test vectors and against
the independent oracle in oracle.py (itself checked against the same vectors)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import MalformedMessageError
from meshrouter.wire import pake

from . import oracle

# draft-irtf-cfrg-cpace, appendix "Test vector for CPace using group X25519 and hash SHA-512".
PRS = b"Password"
CI = bytes.fromhex("0b415f696e69746961746f720b425f726573706f6e646572")
SID = bytes.fromhex("7e4b4791d6a8ef019b936c79fb7f2c57")
GEN_STR = bytes.fromhex(
    "0843506163653235350850617373776f72646d" + "00" * 109
    + "180b415f696e69746961746f720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f2c57"
)
G = bytes.fromhex("d04bf6d41f6a289632a2e929fa29bebd51092512a7829fdde7d314b62f05a73f")
YA_SCALAR = bytes.fromhex("21b4f4bd9e64ed355c3eb676a28ebedaf6d8f17bdc365995b319097153044080")
YB_SCALAR = bytes.fromhex("848b0779ff415f0af4ea14df9dd1d3c29ac41d836c7808896c4eba19c51ac40a")
YA = bytes.fromhex("1d13c89278cdadd826f6d8d7f887701430f8380ddc17611cdd6dc989ce0c9f32")
YB = bytes.fromhex("248cccf6d5cdc3646f0ad593f9e6cef4e69d4945f8372e623512ecea32185623")
K = bytes.fromhex("5b067effbdc0b2a0e1d907b21ebb25cfedb96a852179a847c37e43ee71322c6b")
ISK_OC = bytes.fromhex(
    "eef745e2f6e7ae2b1a1e53da340e777167a07fe150436648c51fb199c11f3cba"
    "bfc683a2b48e1af5881940dc398d375c95e6b4ae9948a45b8770de0656382be4"
)
LOW_ORDER = [
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
]


def key(scalar: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(scalar)


def test_string_utilities_match_the_draft() -> None:
    assert pake.prepend_len(b"") == b"\x00"
    assert pake.prepend_len(b"1234") == bytes.fromhex("0431323334")
    assert pake.prepend_len(bytes(range(128)))[:2] == b"\x80\x01"
    assert pake.lv_cat(b"1234", b"5", b"", b"678") == bytes.fromhex("043132333401350003363738")
    assert pake.o_cat(b"ABCD", b"BCD") == bytes.fromhex("6f6342434441424344")
    assert pake.o_cat(b"BCD", b"ABCDE") == bytes.fromhex("6f634243444142434445")


def test_generator_matches_the_draft() -> None:
    assert pake.generator_string(PRS, CI, SID) == GEN_STR
    assert pake.calculate_generator(PRS, CI, SID) == G


def test_shares_and_isk_match_the_draft() -> None:
    assert pake.public_share(key(YA_SCALAR), G) == YA
    assert pake.public_share(key(YB_SCALAR), G) == YB
    isk_a = pake.intermediate_session_key(key(YA_SCALAR), YA, b"ADa", YB, b"ADb", SID)
    isk_b = pake.intermediate_session_key(key(YB_SCALAR), YB, b"ADb", YA, b"ADa", SID)
    assert isk_a == isk_b == ISK_OC


def test_the_oracle_matches_the_draft() -> None:
    """The oracle is trusted below only because it reproduces the draft."""
    assert oracle.lv(b"1234", b"5", b"", b"678") == bytes.fromhex("043132333401350003363738")
    assert oracle.cpace_generator(PRS, CI, SID) == G
    assert oracle.x25519(YA_SCALAR, G) == YA
    assert oracle.x25519(YB_SCALAR, YA) == K
    assert oracle.cpace_isk(YA_SCALAR, YA, b"ADa", YB, b"ADb", SID) == ISK_OC


@settings(max_examples=25, deadline=None)
@given(
    password=st.binary(min_size=1, max_size=300),
    scalar_a=st.binary(min_size=32, max_size=32),
    scalar_b=st.binary(min_size=32, max_size=32),
    ad_a=st.binary(max_size=12),
    ad_b=st.binary(max_size=12),
)
def test_mesh_exchange_agrees_with_the_oracle(
    password: bytes, scalar_a: bytes, scalar_b: bytes, ad_a: bytes, ad_b: bytes
) -> None:
    generator = pake.calculate_generator(password)
    assert generator == oracle.cpace_generator(password, oracle.MESH_CI, b"")
    share_a = pake.public_share(key(scalar_a), generator)
    share_b = pake.public_share(key(scalar_b), generator)
    assert share_a == oracle.x25519(scalar_a, generator)
    if share_a == share_b:
        return
    isk = pake.intermediate_session_key(key(scalar_a), share_a, ad_a, share_b, ad_b)
    assert isk == oracle.cpace_isk(scalar_a, share_a, ad_a, share_b, ad_b)
    assert isk == pake.intermediate_session_key(key(scalar_b), share_b, ad_b, share_a, ad_a)


def test_different_passwords_give_different_generators_and_keys() -> None:
    a, b = key(YA_SCALAR), key(YB_SCALAR)
    g1, g2 = pake.calculate_generator(b"one"), pake.calculate_generator(b"two")
    assert g1 != g2
    share_a, share_b = pake.public_share(a, g1), pake.public_share(b, g2)
    assert pake.intermediate_session_key(a, share_a, b"", share_b, b"") != (
        pake.intermediate_session_key(b, share_b, b"", share_a, b"")
    )


@pytest.mark.parametrize("point", LOW_ORDER, ids=lambda p: p.hex()[:8])
def test_low_order_shares_are_refused(point: bytes) -> None:
    a = key(YA_SCALAR)
    with pytest.raises(MalformedMessageError, match="low-order"):
        pake.intermediate_session_key(a, YA, b"", point, b"")


@pytest.mark.parametrize("share", [b"", b"\x09" * 31, b"\x09" * 33])
def test_shares_of_the_wrong_size_are_refused(share: bytes) -> None:
    with pytest.raises(MalformedMessageError, match="32 bytes"):
        pake.intermediate_session_key(key(YA_SCALAR), YA, b"", share, b"")


def test_our_own_share_reflected_is_refused() -> None:
    with pytest.raises(MalformedMessageError, match="our own key share"):
        pake.intermediate_session_key(key(YA_SCALAR), YA, b"", YA, b"")
