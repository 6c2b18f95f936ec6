"""The resolver core, rule by rule, with answers read back through dnslib."""

from __future__ import annotations

import random

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dns.resolver import Answer, Drop, Forward, Resolver
from meshrouter.dns.view import NameView

WEB = [0x0A200001, 0x0A200002, 0x0A200003]
VIEW = NameView.build(
    "mesh.local.",
    [("web.mesh.local.", a) for a in WEB] + [("db.prod.mesh.local.", 0x0A200009),
                                            ("db.mesh.local.", 0x0A200009)],
    7,
)
RESOLVER = Resolver("mesh.local", ttl=5, reverse_networks=("10.32.0.0/12",))


def ask(name: str, qtype: str = "A", *, edns: int | None = None, tcp: bool = False,
        view: NameView = VIEW, fast: bool = True, seed: int = 0) -> tuple[Answer, DNSRecord]:
    query = DNSRecord.question(name, qtype)
    if edns is not None:
        query.add_ar(EDNS0(udp_len=edns))
    outcome = RESOLVER.resolve(query.pack(), view, random.Random(seed), tcp=tcp, fast=fast)
    assert isinstance(outcome, Answer), outcome
    reply = DNSRecord.parse(outcome.data)
    assert reply.header.id == query.header.id
    assert reply.header.qr == 1
    assert reply.questions == query.questions
    return outcome, reply


def a_records(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


@pytest.mark.parametrize("fast", [True, False])
def test_a_returns_every_live_address_authoritatively(fast: bool) -> None:
    answer, reply = ask("web.mesh.local", fast=fast)
    assert answer.rcode == "NOERROR"
    assert sorted(a_records(reply)) == ["10.32.0.1", "10.32.0.2", "10.32.0.3"]
    assert reply.header.aa == 1 and reply.header.rcode == RCODE.NOERROR
    assert all(rr.ttl == 5 for rr in reply.rr)


def test_a_answers_are_shuffled_per_query() -> None:
    orders = {tuple(a_records(ask("web.mesh.local", seed=seed)[1])) for seed in range(40)}
    assert len(orders) == 6  # every permutation of three addresses shows up


@pytest.mark.parametrize("name", ["WEB.Mesh.Local", "wEb.mesh.local."])
def test_names_are_case_insensitive_and_the_question_is_echoed(name: str) -> None:
    _answer, reply = ask(name)
    assert len(a_records(reply)) == 3
    assert str(reply.rr[0].rname) == str(DNSRecord.question(name).q.qname)


@pytest.mark.parametrize("qtype", ["AAAA", "MX", "TXT", "SRV"])
def test_other_types_of_a_known_name_are_nodata_with_soa(qtype: str) -> None:
    answer, reply = ask("web.mesh.local", qtype)
    assert answer.rcode == "NODATA"
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr
    assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]
    assert str(reply.auth[0].rname) == "mesh.local."
    assert reply.auth[0].rdata.times[-1] == 5  # negative TTL = ttl


def test_unknown_name_in_domain_is_nxdomain_with_soa() -> None:
    answer, reply = ask("nope.mesh.local")
    assert answer.rcode == "NXDOMAIN"
    assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr
    assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]


def test_empty_non_terminal_is_nodata_not_nxdomain() -> None:
    answer, _reply = ask("prod.mesh.local")
    assert answer.rcode == "NODATA"


def test_soa_at_the_apex() -> None:
    answer, reply = ask("mesh.local", "SOA")
    assert answer.rcode == "NOERROR"
    assert [QTYPE[rr.rtype] for rr in reply.rr] == ["SOA"]
    assert reply.rr[0].rdata.times[0] == 7  # serial follows the view


def test_ptr_for_a_known_address_lists_its_names() -> None:
    answer, reply = ask("9.0.32.10.in-addr.arpa", "PTR")
    assert answer.rcode == "NOERROR"
    assert sorted(str(rr.rdata) for rr in reply.rr) == ["db.mesh.local.", "db.prod.mesh.local."]


def test_ptr_for_an_unknown_overlay_address_is_nxdomain_from_us() -> None:
    answer, reply = ask("77.0.32.10.in-addr.arpa", "PTR")
    assert answer.rcode == "NXDOMAIN"
    assert str(reply.auth[0].rname) == "10.in-addr.arpa."


def test_ptr_outside_the_overlay_and_names_outside_the_domain_are_forwarded() -> None:
    for name, qtype in [("1.1.168.192.in-addr.arpa", "PTR"), ("example.com", "A"),
                        ("mesh.localhost", "A"), ("local", "SOA")]:
        query = DNSRecord.question(name, qtype).pack()
        outcome = RESOLVER.resolve(query, VIEW, random.Random(0))
        assert outcome == Forward(query, name.lower() + "."), name


def test_records_left_out_of_the_view_are_not_answered() -> None:
    view = NameView.build("mesh.local.", [("web.mesh.local.", WEB[0])], 8)
    _answer, reply = ask("web.mesh.local", view=view)
    assert a_records(reply) == ["10.32.0.1"]
    answer, _ = ask("db.mesh.local", view=view)
    assert answer.rcode == "NXDOMAIN"


def many(count: int) -> NameView:
    return NameView.build("mesh.local.", [("big.mesh.local.", 0x0A300000 + i)
                                          for i in range(count)], 1)


@pytest.mark.parametrize("fast", [True, False])
def test_udp_answer_over_512_bytes_is_truncated_and_tcp_is_not(fast: bool) -> None:
    view = many(40)  # 40 x 16 bytes > 512
    answer, reply = ask("big.mesh.local", view=view, fast=fast)
    assert answer.truncated and reply.header.tc == 1 and not reply.rr
    assert len(answer.data) <= 512
    answer, reply = ask("big.mesh.local", view=view, tcp=True, fast=fast)
    assert not answer.truncated and reply.header.tc == 0 and len(reply.rr) == 40


@pytest.mark.parametrize("fast", [True, False])
def test_edns0_buffer_size_is_honoured_and_echoed(fast: bool) -> None:
    view = many(40)
    answer, reply = ask("big.mesh.local", view=view, edns=1232, fast=fast)
    assert not answer.truncated and len(reply.rr) == 40
    opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opt) == 1 and opt[0].rclass == 4096
    answer, reply = ask("big.mesh.local", view=many(200), edns=1232, fast=fast)
    assert answer.truncated and len(answer.data) <= 1232
    answer, reply = ask("big.mesh.local", view=many(40), edns=100, fast=fast)  # below 512
    assert answer.truncated and len(answer.data) <= 512


def test_edns_version_above_zero_gets_badvers() -> None:
    query = DNSRecord.question("web.mesh.local")
    query.add_ar(EDNS0(udp_len=1232, version=1))
    outcome = RESOLVER.resolve(query.pack(), VIEW, random.Random(0))
    assert isinstance(outcome, Answer) and outcome.rcode == "BADVERS"
    reply = DNSRecord.parse(outcome.data)
    assert not reply.rr and (reply.ar[0].ttl >> 24) == 1


def test_responses_and_garbage_are_dropped_and_other_opcodes_not_implemented() -> None:
    reply_packet = DNSRecord.question("web.mesh.local").reply().pack()
    assert RESOLVER.resolve(reply_packet, VIEW, random.Random(0)) == Drop("not a query")
    assert RESOLVER.resolve(b"\x00\x01garbage", VIEW, random.Random(0)) == Drop("malformed")
    assert RESOLVER.resolve(b"", VIEW, random.Random(0)) == Drop("malformed")
    assert RESOLVER.resolve(b"x" * 5000, VIEW, random.Random(0)) == Drop("oversized")
    notify = DNSRecord.question("web.mesh.local")
    notify.header.opcode = 4
    outcome = RESOLVER.resolve(notify.pack(), VIEW, random.Random(0))
    assert isinstance(outcome, Answer) and outcome.rcode == "NOTIMP"


def test_no_question_is_formerr_and_other_classes_refused() -> None:
    empty = DNSRecord()
    outcome = RESOLVER.resolve(empty.pack(), VIEW, random.Random(0))
    assert isinstance(outcome, Answer) and outcome.rcode == "FORMERR"
    chaos = DNSRecord.question("web.mesh.local", "TXT", "CH")
    outcome = RESOLVER.resolve(chaos.pack(), VIEW, random.Random(0))
    assert isinstance(outcome, Answer) and outcome.rcode == "REFUSED"


def test_error_builds_servfail_for_a_query_and_nothing_for_garbage() -> None:
    query = DNSRecord.question("example.com")
    data = RESOLVER.error(query.pack(), "SERVFAIL")
    assert data is not None
    reply = DNSRecord.parse(data)
    assert reply.header.rcode == RCODE.SERVFAIL and reply.header.id == query.header.id
    assert RESOLVER.error(b"\x01", "SERVFAIL") is None


@settings(deadline=None, max_examples=80)
@given(
    labels=st.lists(st.sampled_from(["web", "WEB", "db", "prod", "big", "x-1"]), min_size=1,
                    max_size=3),
    qtype=st.sampled_from(["A", "AAAA", "ANY", "MX"]),
    edns=st.one_of(st.none(), st.integers(0, 5000)),
    tcp=st.booleans(),
    count=st.integers(1, 80),
    seed=st.integers(0, 1000),
)
def test_fast_path_answers_exactly_as_the_dnslib_path(
        labels: list[str], qtype: str, edns: int | None, tcp: bool, count: int,
        seed: int) -> None:
    view = NameView.build("mesh.local.", [("big.mesh.local.", 0x0A300000 + i)
                                          for i in range(count)] + VIEW_PAIRS, 3)
    query = DNSRecord.question(".".join(labels) + ".mesh.local", qtype)
    if edns is not None:
        query.add_ar(EDNS0(udp_len=edns))
    fast = RESOLVER.resolve(query.pack(), view, random.Random(seed), tcp=tcp, fast=True)
    slow = RESOLVER.resolve(query.pack(), view, random.Random(seed), tcp=tcp, fast=False)
    assert isinstance(fast, Answer) and isinstance(slow, Answer)
    assert (fast.rcode, fast.truncated) == (slow.rcode, slow.truncated)
    assert DNSRecord.parse(fast.data) == DNSRecord.parse(slow.data)


VIEW_PAIRS = [("web.mesh.local.", a) for a in WEB]


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_outcome_never_an_exception(blob: bytes) -> None:
    outcome = RESOLVER.resolve(blob, VIEW, random.Random(0))
    assert isinstance(outcome, Answer | Forward | Drop)


def test_memoized_answers_follow_the_query_id_and_a_new_view() -> None:
    resolver = Resolver("mesh.local")
    first = DNSRecord.question("db.mesh.local")
    second = DNSRecord.question("db.mesh.local")
    second.header.id = (first.header.id + 1) % 65536
    one = resolver.resolve(first.pack(), VIEW, random.Random(0))
    two = resolver.resolve(second.pack(), VIEW, random.Random(0))
    assert isinstance(one, Answer) and isinstance(two, Answer)
    assert DNSRecord.parse(two.data).header.id == second.header.id
    assert one.data[2:] == two.data[2:]
    moved = NameView.build("mesh.local.", [("db.mesh.local.", 0x0A20000A)], 8)
    three = resolver.resolve(second.pack(), moved, random.Random(0))
    assert isinstance(three, Answer)
    assert a_records(DNSRecord.parse(three.data)) == ["10.32.0.10"]
    gone = NameView.build("mesh.local.", [], 9)
    four = resolver.resolve(second.pack(), gone, random.Random(0))
    assert isinstance(four, Answer) and four.rcode == "NXDOMAIN"
