"""When an order is next checked, and when ordermon gives up on it.

Pure arithmetic: no clock (``now`` is passed in), no I/O and no randomness of its own (the
jitter draw in [-1, 1] is passed in), so every rule here is testable and repeatable.
"""

import dataclasses
import datetime as dt
import math

MODES = ("backoff", "learned")


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
    # ``backoff`` (the formula above) or ``learned``: checks placed from the provider's own
    # history (sweep/placement.py), backoff while too little or too old is known.
    mode: str = "backoff"
    window: dt.timedelta = dt.timedelta(days=7)  # learn from orders finished this recently,
    window_orders: int = 2000  # and at most this many of the latest
    min_samples: int = 100  # fewer finished orders in the window: backoff
    request_cost: dt.timedelta = dt.timedelta(seconds=20)  # one request is worth this delay
    min_delay: dt.timedelta = dt.timedelta(seconds=5)  # the shortest learned pause
    explore: float = 0.1  # the share of learned pauses halved, so it keeps learning
    refresh_every: dt.timedelta = dt.timedelta(minutes=5)  # the summary is recomputed then,
    stale_after: dt.timedelta = dt.timedelta(hours=1)  # and one older than this is not used

    @property
    def learned(self) -> bool:
        return self.mode == "learned"


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
    return spread(raw_backoff(attempts, policy), policy, jitter_draw)


def raw_backoff(attempts: int, policy: Policy) -> float:
    """Backoff's pause in seconds before the jitter."""
    base = policy.base_delay.total_seconds()
    cap = policy.max_delay.total_seconds()
    exponent = max(attempts - 1, 0)
    if policy.factor > 1 and base > 0:
        exponent = min(exponent, math.ceil(math.log(max(cap / base, 1.0), policy.factor)) + 1)
        raw = min(base * policy.factor**exponent, cap)
    else:
        raw = min(base, cap)
    return raw


def spread(seconds: float, policy: Policy, jitter_draw: float) -> dt.timedelta:
    """A pause spread by the jitter (the draw is in [-1, 1]), never negative."""
    draw = min(max(jitter_draw, -1.0), 1.0)
    if math.isnan(draw):
        draw = 0.0
    return dt.timedelta(seconds=max(seconds * (1 + policy.jitter * draw), 0.0))


def learned_pause(planned: float | None, policy: Policy, explore_draw: float = 1.0) -> float | None:
    """A learned plan's pause (seconds) bounded to [min_delay, max_delay], halved when the
    draw in [0, 1) falls under ``explore`` (so the schedule keeps seeing what happens before
    its own checks); None (backoff) when the plan has nothing to say or no number."""
    if planned is None or math.isnan(planned):
        return None
    low = policy.min_delay.total_seconds()
    high = max(policy.max_delay.total_seconds(), low)
    pause = min(max(planned, low), high)
    if explore_draw < policy.explore:
        pause = max(pause / 2, low)
    return pause


def is_exhausted(
    attempts: int, now: dt.datetime, order_deadline: dt.datetime, policy: Policy
) -> bool:
    """True when a non-final answer after ``attempts`` checks means giving up now."""
    if attempts < 1:
        return False
    if policy.max_attempts is not None and attempts >= policy.max_attempts:
        return True
    return now >= order_deadline


@dataclasses.dataclass(frozen=True)
class Decision:
    at: dt.datetime | None  # None: the order expires
    why: str


def decide(
    now: dt.datetime,
    attempts: int,
    order_deadline: dt.datetime,
    policy: Policy,
    jitter_draw: float,
    retry_after: dt.timedelta | None = None,
    planned: float | None = None,
    chosen_by: str = "",
) -> Decision:
    """When to check again after a non-final answer (None when the order must expire), and
    why, in a few words for `ordermon show`.

    ``planned`` is a learned plan's pause in seconds (None: backoff's), ``chosen_by`` what
    chose it. Whichever chose the pause, the same rules follow, here and only here: the
    jitter spreads it, a provider's Retry-After wins when it is longer, and a check that would
    fall past the deadline is moved to the deadline, so the last chance is taken, not
    skipped; max_attempts and the deadline expire the order first.
    """
    if is_exhausted(attempts, now, order_deadline, policy):
        if policy.max_attempts is not None and attempts >= policy.max_attempts:
            return Decision(None, f"max_attempts ({policy.max_attempts}) used")
        return Decision(None, "the deadline (give_up_after) passed")
    if planned is None:
        raw = raw_backoff(attempts, policy)
        why = chosen_by or f"backoff after check {attempts}"
    else:
        raw, why = planned, chosen_by or "learned plan"
    pause = spread(raw, policy, jitter_draw)
    if retry_after is not None and retry_after > pause:
        pause, why = retry_after, f"the provider's Retry-After ({retry_after.total_seconds():g}s)"
    at = now + pause
    if at > order_deadline:
        at, why = order_deadline, "the deadline: the last chance"
    return Decision(max(at, now), why)


def next_check_at(
    now: dt.datetime,
    attempts: int,
    order_deadline: dt.datetime,
    policy: Policy,
    jitter_draw: float,
    retry_after: dt.timedelta | None = None,
    planned: float | None = None,
) -> dt.datetime | None:
    """`decide`'s time alone."""
    return decide(now, attempts, order_deadline, policy, jitter_draw, retry_after, planned).at


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
