"""The pure part of the OVS shell: what goes to ovs-ofctl for a full or a delta apply."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dataplane.core.flow import Flow, Match, Output
from meshrouter.dataplane.core.pipeline import COOKIE_MASK, COOKIE_PREFIX, Category, cookie
from meshrouter.dataplane.ovs import flowsync
from meshrouter.errors import InvalidRequestError

OURS = f"cookie=0x{COOKIE_PREFIX:x}/0x{COOKIE_MASK:x}"


@dataclass(frozen=True)
class Raw:
    """A flow given as text (the shell needs only the two renderings)."""

    key: str
    line: str

    def match_text(self) -> str:
        return self.key

    def to_ofctl(self) -> str:
        return self.line


def _flow(port: int, mac_byte: int, priority: int = 100) -> Flow:
    return Flow(1, priority, Match(dl_dst=f"02:00:00:00:00:{mac_byte:02x}"), (Output(port),),
                cookie(Category.ENDPOINT, mac_byte))


def test_delta_of_one_changed_one_added_one_removed_flow_is_exact() -> None:
    installed = flowsync.desired_table([_flow(1000, 1), _flow(1001, 2), _flow(1002, 3)])
    desired = flowsync.desired_table([_flow(1000, 1), _flow(1005, 2), _flow(1003, 4)])
    change = flowsync.delta(installed, desired, OURS)
    c2, c4 = cookie(Category.ENDPOINT, 2), cookie(Category.ENDPOINT, 4)
    assert change.text.splitlines() == [
        f"add cookie=0x{c2:x},table=1,priority=100,dl_dst=02:00:00:00:00:02 actions=output:1005",
        f"add cookie=0x{c4:x},table=1,priority=100,dl_dst=02:00:00:00:00:04 actions=output:1003",
        f"delete_strict {OURS},table=1,priority=100,dl_dst=02:00:00:00:00:03",
    ]
    assert (change.added, change.removed) == (2, 1)
    assert flowsync.delta(desired, desired, OURS).empty


def test_full_text_puts_foreign_flows_first_and_ours_sorted() -> None:
    desired = flowsync.desired_table([_flow(1001, 2), _flow(1000, 1)])
    text = flowsync.full_text(desired, ["cookie=0x1,table=7,priority=5 actions=drop"])
    lines = text.splitlines()
    assert lines[0] == "cookie=0x1,table=7,priority=5 actions=drop"
    assert lines[1:] == sorted(lines[1:]) and len(lines) == 3
    assert flowsync.full_text({}) == ""


def test_lines_that_could_smuggle_flow_mods_or_conflict_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="newline"):
        flowsync.desired_table([Raw("table=0,priority=1", "x actions=drop\ndelete")])
    with pytest.raises(InvalidRequestError, match="same match"):
        flowsync.desired_table([Raw("k", "a actions=drop"), Raw("k", "b actions=drop")])
    assert flowsync.desired_table([Raw("k", "a"), Raw("k", "a")]) == {"k": "a"}


DUMP = """\
 cookie=0x6d72000100000000, priority=100,tun_id=0x1092,in_port=100 actions=goto_table:1
 cookie=0x1, table=7, priority=5,dl_dst=02:00:00:00:00:77 actions=drop
 table=3, priority=1 actions=drop
 cookie=0x6d72000300000001, table=1, priority=100,dl_dst=02:4d:00:00:02:02 \
actions=set_field:192.168.77.2->tun_dst,set_field:0x1092->tun_id,output:100
"""


def test_foreign_lines_are_those_without_our_cookie_prefix() -> None:
    assert flowsync.foreign_lines(DUMP, COOKIE_PREFIX, COOKIE_MASK) == [
        "cookie=0x1, table=7, priority=5,dl_dst=02:00:00:00:00:77 actions=drop",
        "table=3, priority=1 actions=drop",
    ]
    assert flowsync.foreign_lines("OFPST_FLOW reply (OF1.3) (xid=0x2):\n", 1, 1) == []


def test_tunnel_destinations_are_read_from_set_field_actions() -> None:
    assert flowsync.tunnel_destinations(DUMP.splitlines()) == {"192.168.77.2"}


def _oracle_apply(table: dict[str, str], text: str) -> dict[str, str]:
    """What OVS would hold after the bundle: parses the lines independently."""
    out = dict(table)
    for line in text.splitlines():
        verb, rest = line.split(" ", 1)
        if verb == "add":
            head = rest.split(" actions=", 1)[0]
            key = head.split(",", 1)[1]  # drop "cookie=0x.."
            out[key] = rest
        else:
            assert verb == "delete_strict"
            cookie_part, key = rest.split(",", 1)
            assert cookie_part == OURS
            del out[key]
    return out


tables = st.lists(
    st.tuples(st.integers(0, 15), st.sampled_from([0, 100, 200]), st.integers(1000, 1003)),
    max_size=20,
).map(lambda rows: flowsync.desired_table(
    {(b, p): _flow(port, b, p) for b, p, port in rows}.values()))


@settings(max_examples=100, deadline=None)
@given(installed=tables, desired=tables)
def test_applying_the_delta_to_the_installed_table_gives_the_desired_one(
    installed: dict[str, str], desired: dict[str, str]
) -> None:
    change = flowsync.delta(installed, desired, OURS)
    assert _oracle_apply(installed, change.text) == desired
    changed = sum(1 for k, v in desired.items() if installed.get(k) != v)
    assert change.added == changed
    assert change.removed == len(installed.keys() - desired.keys())
