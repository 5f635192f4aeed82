"""When an order is next checked, and when ordermon gives up on it.

Pure arithmetic: no clock (``now`` is passed in), no I/O and no randomness of its own (the
jitter draw in [-1, 1] is passed in), so every rule here is testable and repeatable.
"""

import dataclasses
import datetime as dt
import math


@dataclasses.dataclass(frozen=True)
class Policy:
    """The retry policy of one provider (the config's ``schedule`` keys)."""

    first_check_after: dt.timedelta = dt.timedelta(seconds=60)
    base_delay: dt.timedelta = dt.timedelta(seconds=30)
    factor: float = 2.0
    max_delay: dt.timedelta = dt.timedelta(minutes=10)
    jitter: float = 0.1
    max_attempts: int | None = None
    give_up_after: dt.timedelta = dt.timedelta(hours=24)


def first_check_at(sent_at: dt.datetime, policy: Policy) -> dt.datetime:
    """The first check of a dispatch; in the past for a backlog, which makes it due at once."""
    return sent_at + policy.first_check_after


def deadline(sent_at: dt.datetime, policy: Policy) -> dt.datetime:
    """After this instant a still unresolved order is expired (once checked at least once)."""
    return sent_at + policy.give_up_after


def backoff(attempts: int, policy: Policy, jitter_draw: float) -> dt.timedelta:
    """The pause after the ``attempts``-th non-final check: base * factor^(n-1), capped, spread.

    The exponent is capped before it is used, so attempt 10,000 costs the same as attempt 10
    and never overflows a float.
    """
    base = policy.base_delay.total_seconds()
    cap = policy.max_delay.total_seconds()
    exponent = max(attempts - 1, 0)
    if policy.factor > 1 and base > 0:
        exponent = min(exponent, math.ceil(math.log(max(cap / base, 1.0), policy.factor)) + 1)
        raw = min(base * policy.factor**exponent, cap)
    else:
        raw = min(base, cap)
    draw = min(max(jitter_draw, -1.0), 1.0)
    return dt.timedelta(seconds=max(raw * (1 + policy.jitter * draw), 0.0))


def is_exhausted(
    attempts: int, now: dt.datetime, order_deadline: dt.datetime, policy: Policy
) -> bool:
    """True when a non-final answer after ``attempts`` checks means giving up now."""
    if attempts < 1:
        return False
    if policy.max_attempts is not None and attempts >= policy.max_attempts:
        return True
    return now >= order_deadline


def next_check_at(
    now: dt.datetime,
    attempts: int,
    order_deadline: dt.datetime,
    policy: Policy,
    jitter_draw: float,
    retry_after: dt.timedelta | None = None,
) -> dt.datetime | None:
    """When to check again after a non-final answer, or None when the order must expire.

    A provider's Retry-After wins when it is longer than the backoff; a check that would fall
    past the deadline is moved to the deadline, so the last chance is taken, not skipped.
    """
    if is_exhausted(attempts, now, order_deadline, policy):
        return None
    pause = backoff(attempts, policy, jitter_draw)
    if retry_after is not None and retry_after > pause:
        pause = retry_after
    return max(min(now + pause, order_deadline), now)


def bounded_wait(seconds: float | None, longest: dt.timedelta) -> dt.timedelta | None:
    """A wait a provider asked for (Retry-After) or a hold, as a timedelta of at most
    ``longest``; None for no wait. Safe for any float: NaN, zero and negatives are no wait,
    infinity and 1e300 are ``longest``."""
    if seconds is None or math.isnan(seconds) or seconds <= 0:
        return None
    return dt.timedelta(seconds=min(seconds, max(longest.total_seconds(), 0.0)))


def after_provider_trouble(
    now: dt.datetime,
    attempts: int,
    policy: Policy,
    jitter_draw: float,
    retry_after: dt.timedelta | None = None,
) -> dt.datetime:
    """When to try again after the provider (not the order) failed: backoff or Retry-After,
    whichever is longer. Never an expiry: the outage is not the customer's."""
    pause = backoff(max(attempts, 1), policy, jitter_draw)
    if retry_after is not None and retry_after > pause:
        pause = retry_after
    return now + pause
