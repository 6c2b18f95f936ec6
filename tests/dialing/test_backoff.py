from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dialing.backoff import BackoffPolicy


def test_base_intervals_follow_weave_schedule() -> None:
    policy = BackoffPolicy()
    assert [policy.base_interval(n) for n in range(1, 5)] == [2.0, 3.0, 4.5, 6.75]
    assert policy.base_interval(100) == 360.0


@settings(deadline=None, max_examples=300)
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_delay_is_within_half_to_one_and_a_half_of_base(failures: int, seed: int) -> None:
    policy = BackoffPolicy()
    base = policy.base_interval(failures)
    delay = policy.delay(failures, random.Random(seed))
    assert base / 2 <= delay < base * 1.5


def test_delay_is_capped() -> None:
    policy = BackoffPolicy()
    assert all(policy.delay(50, random.Random(s)) < 540.0 for s in range(100))


@pytest.mark.parametrize("failures", [1, 5, 20])
def test_same_seed_same_delay(failures: int) -> None:
    policy = BackoffPolicy()
    assert policy.delay(failures, random.Random(7)) == policy.delay(failures, random.Random(7))
