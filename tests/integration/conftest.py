"""Fixtures of the namespace lab: every lab is closed even when its test fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.lab import Lab, lab_skip_reason


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: real OVS in network namespaces (root, openvswitch-switch)"
    )


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    made = Lab()
    try:
        yield made
    finally:
        made.close()
        left = made.leftovers()
        assert not left, f"the lab left {left} behind"
