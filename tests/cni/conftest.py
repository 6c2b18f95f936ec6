"""Fixtures of the CNI tests in the namespace lab (closed even when a test fails)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cni.runtime import open_lab, podman_skip_reason
from tests.integration.lab import Lab, lab_skip_reason


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A lab for the conformance tests (root and Open vSwitch, else skipped)."""
    with open_lab(78, lab_skip_reason()) as made:
        yield made


@pytest.fixture
def podman_lab() -> Iterator[Lab]:
    """A lab for podman (also podman, runc, busybox-static and nsenter, else skipped)."""
    with open_lab(76, podman_skip_reason()) as made:
        yield made
