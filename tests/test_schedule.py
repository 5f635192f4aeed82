"""The pure backoff and deadline arithmetic."""

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from ordermon.sweep import schedule

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

policies = st.builds(
    schedule.Policy,
    first_check_after=st.timedeltas(dt.timedelta(0), dt.timedelta(hours=1)),
    base_delay=st.timedeltas(dt.timedelta(seconds=1), dt.timedelta(minutes=5)),
    factor=st.floats(1.0, 10.0),
    max_delay=st.timedeltas(dt.timedelta(minutes=5), dt.timedelta(hours=2)),
    jitter=st.floats(0.0, 0.99),
    max_attempts=st.none() | st.integers(1, 500),
    give_up_after=st.timedeltas(dt.timedelta(minutes=1), dt.timedelta(days=3)),
)
draws = st.floats(-1.0, 1.0)


@given(policies, st.integers(1, 10_000), draws)
def test_backoff_never_exceeds_max_delay_plus_jitter(
    policy: schedule.Policy, attempts: int, draw: float
) -> None:
    """No pause is longer than max_delay spread by the jitter."""
    pause = schedule.backoff(attempts, policy, draw)
    assert pause <= policy.max_delay * (1 + policy.jitter) + dt.timedelta(microseconds=1)
    assert pause >= dt.timedelta(0)


@given(
    policies, st.integers(0, 10_000), draws, st.timedeltas(dt.timedelta(0), dt.timedelta(days=4))
)
def test_next_check_is_never_before_now_nor_after_deadline(
    policy: schedule.Policy, attempts: int, draw: float, elapsed: dt.timedelta
) -> None:
    """A next check is never before now, nor after the deadline once the order was checked
    (an order never checked is checked now, even past its deadline)."""
    now = T0 + elapsed
    deadline = schedule.deadline(T0, policy)
    nxt = schedule.next_check_at(now, attempts, deadline, policy, draw)
    if nxt is not None:
        assert now <= nxt
        assert nxt <= deadline if attempts >= 1 else nxt <= max(deadline, now)


@given(policies, draws)
def test_safe_at_attempt_ten_thousand(policy: schedule.Policy, draw: float) -> None:
    """Attempt 10,000 computes without overflow and stays capped."""
    pause = schedule.backoff(10_000, policy, draw)
    assert pause <= policy.max_delay * 2


@given(policies, st.integers(1, 200), draws)
def test_deterministic_for_a_given_draw(
    policy: schedule.Policy, attempts: int, draw: float
) -> None:
    """The same inputs and jitter draw give the same answer."""
    deadline = T0 + dt.timedelta(days=10)
    first = schedule.next_check_at(T0, attempts, deadline, policy, draw)
    assert first == schedule.next_check_at(T0, attempts, deadline, policy, draw)


def test_doubling_sequence_without_jitter() -> None:
    """30s, 1m, 2m, 4m, 8m, then the 10m cap, as the config documents."""
    policy = schedule.Policy(jitter=0.0)
    pauses = [schedule.backoff(n, policy, 0.0).total_seconds() for n in range(1, 8)]
    assert pauses == [30, 60, 120, 240, 480, 600, 600]


def test_jitter_spreads_within_its_fraction() -> None:
    """A draw of -1 or 1 moves the pause by exactly the jitter fraction."""
    policy = schedule.Policy(jitter=0.1)
    assert schedule.backoff(1, policy, -1.0).total_seconds() == 27
    assert schedule.backoff(1, policy, 1.0).total_seconds() == 33


def test_retry_after_wins_when_longer() -> None:
    """A provider's Retry-After longer than the backoff decides the next check."""
    policy = schedule.Policy(jitter=0.0)
    deadline = T0 + dt.timedelta(hours=1)
    later = schedule.next_check_at(T0, 1, deadline, policy, 0.0, dt.timedelta(seconds=300))
    sooner = schedule.next_check_at(T0, 1, deadline, policy, 0.0, dt.timedelta(seconds=5))
    assert later == T0 + dt.timedelta(seconds=300)
    assert sooner == T0 + dt.timedelta(seconds=30)


def test_check_past_the_deadline_is_moved_to_it() -> None:
    """The last check happens at the deadline instead of being skipped."""
    policy = schedule.Policy(jitter=0.0, base_delay=dt.timedelta(minutes=10))
    deadline = T0 + dt.timedelta(minutes=3)
    assert schedule.next_check_at(T0, 1, deadline, policy, 0.0) == deadline


def test_expiry_rules() -> None:
    """Expired at the deadline or after max_attempts, never before the first check."""
    policy = schedule.Policy(max_attempts=5)
    deadline = T0 + dt.timedelta(hours=24)
    assert not schedule.is_exhausted(0, deadline + dt.timedelta(days=1), deadline, policy)
    assert schedule.is_exhausted(1, deadline, deadline, policy)
    assert not schedule.is_exhausted(4, T0, deadline, policy)
    assert schedule.is_exhausted(5, T0, deadline, policy)
    assert schedule.next_check_at(T0, 5, deadline, policy, 0.0) is None


def test_first_check_and_deadline_follow_sent_at() -> None:
    """The first check is sentAt + first_check_after; the deadline sentAt + give_up_after."""
    policy = schedule.Policy()
    assert schedule.first_check_at(T0, policy) == T0 + dt.timedelta(seconds=60)
    assert schedule.deadline(T0, policy) == T0 + dt.timedelta(hours=24)
