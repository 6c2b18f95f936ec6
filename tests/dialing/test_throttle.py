from __future__ import annotations

from meshrouter.dialing.throttle import TokenBucket


def test_burst_then_refill() -> None:
    bucket = TokenBucket(capacity=3, refill_interval=0.5)
    assert [bucket.try_take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time(0.0) == 0.5
    assert not bucket.try_take(0.25)
    assert bucket.try_take(0.5)
    assert not bucket.try_take(0.5)


def test_never_exceeds_capacity() -> None:
    bucket = TokenBucket(capacity=2, refill_interval=0.1)
    assert bucket.try_take(0.0)
    # A long idle period refills only up to capacity.
    assert [bucket.try_take(100.0) for _ in range(3)] == [True, True, False]


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    bucket = TokenBucket(capacity=1, refill_interval=1.0)
    assert bucket.try_take(10.0)
    assert not bucket.try_take(5.0)
    assert not bucket.try_take(10.5)
    assert bucket.try_take(11.0)


def test_float_residue_cannot_make_a_caller_spin() -> None:
    """A fractional token just under 1 must not yield waits that round to nothing."""
    bucket = TokenBucket(capacity=1, refill_interval=0.05)
    now = 1000.0
    assert bucket.try_take(now)
    for _ in range(1000):
        wait = bucket.wait_time(now)
        if bucket.try_take(now):
            break
        assert wait >= 1e-6
        now += wait
    else:
        raise AssertionError("the bucket never refilled")
