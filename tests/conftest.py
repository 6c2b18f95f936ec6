"""Helpers shared by the test packages (each used to be copied into several files).

* ``merged`` and ``assert_merge_laws``: the CRDT laws every channel's data must
  keep (commutative, associative, idempotent, ``other`` never mutated), for any
  ``GossipData`` -- a new channel's tests call them instead of copying them.
* ``decoded_or_none`` and ``assert_reencodes``: a fuzz test that managed to
  decode something checks that re-encoding gives the same value, and that the
  bytes are canonical from then on.
* ``runtime_imports``: the modules a file imports outside ``TYPE_CHECKING``
  blocks, for the per-package sans-IO checks.

Import them as ``from tests.conftest import ...`` (``tests`` is a package, so
pytest loads this file as ``tests.conftest`` and the import finds the same module).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any, TypeVar

from meshrouter.errors import ProtocolError

T = TypeVar("T")


def merged(first: Any, *rest: Any) -> Any:
    """A copy of ``first`` with every one of ``rest`` merged in, in order."""
    result = first.copy()
    for part in rest:
        result.merge(part)
    return result


def assert_merge_laws(a: Any, b: Any, c: Any) -> None:
    """The laws the gossip core relies on to coalesce, reorder and repeat updates.

    ``a``, ``b`` and ``c`` are ``GossipData`` of one type, compared with ``==``.
    """
    a_before, b_before, c_before = a.copy(), b.copy(), c.copy()
    assert merged(a, b) == merged(b, a), "merge is not commutative"
    bc = merged(b, c)
    assert merged(a, b, c) == merged(a, bc), "merge is not associative"
    once = merged(a, b)
    twice = once.copy()
    assert twice.merge(b) is None, "merging the same data again reported a delta"
    assert twice == once, "merge is not idempotent"
    same = a.copy()
    assert same.merge(a) is None and same == a, "merging a copy of itself changed it"
    assert (a, b, c) == (a_before, b_before, c_before), "merge mutated its argument"


def decoded_or_none(decode: Callable[[bytes], T], payload: bytes) -> T | None:
    """``decode(payload)``, or None when it refuses with a ``ProtocolError``.

    Any other exception propagates: untrusted input may only ever be refused
    with a protocol error.
    """
    try:
        return decode(payload)
    except ProtocolError:
        return None


def assert_reencodes(decode: Callable[[bytes], T], encode: Callable[[T], bytes], value: T) -> None:
    """What decoded once re-encodes to bytes that decode to an equal value, and
    encoding that value again gives the same bytes (the form is canonical)."""
    payload = encode(value)
    again = decode(payload)
    assert again == value, f"re-encoding changed the value: {value!r} -> {again!r}"
    assert encode(again) == payload, "the encoding of one value is not stable"


def runtime_imports(tree: ast.Module) -> set[str]:
    """Top-level module names imported outside ``if TYPE_CHECKING:`` blocks
    (absolute imports only: a relative import stays inside its package)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in {
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        }:
            return
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found
