"""The learned schedule's pure parts: the interval-censored estimator, the placement, and the
deadline rules both modes share."""

import datetime as dt
import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermon import config, errors
from ordermon.config import providers as provider_config
from ordermon.sweep import estimate, models, placement, schedule

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SIGMA = math.log(600 / 90) / 1.6449  # log-normal, median 90 s, p95 10 min


def _observe(delivered: float, gap: Callable[[], float]) -> tuple[float, float]:
    """(last check before the delivery, first check at or after it) on a random schedule."""
    last, at = 0.0, 0.0
    while True:
        at += gap()
        if at >= delivered:
            return last, at
        last = at


def _lognormal_data(seed: int, count: int = 2000) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [
        _observe(90 * math.exp(SIGMA * rng.gauss(0, 1)), lambda: rng.uniform(5, 60))
        for _ in range(count)
    ]


def _true_lognormal(share: float) -> float:
    z = {0.25: -0.6745, 0.5: 0.0, 0.9: 1.2816}[share]
    return 90 * math.exp(SIGMA * z)


def test_recovers_the_quantiles_of_a_log_normal() -> None:
    """From interval-censored checks alone, p25, p50 and p90 within 15 % of the truth."""
    found = estimate.estimate(_lognormal_data(7))
    assert found.samples == 2000 and found.covered > 0.999
    for share in (0.25, 0.5, 0.9):
        value = found.quantile(share)
        assert value is not None
        assert abs(value - _true_lognormal(share)) / _true_lognormal(share) < 0.15, share


def test_better_than_taking_the_check_time_as_the_answer() -> None:
    """The first final check's time would teach the schedule its own lateness: its median is
    well above the truth, the estimator's is not."""
    data = _lognormal_data(8)
    naive = sorted(upper for _, upper in data)[len(data) // 2]
    learned = estimate.estimate(data).quantile(0.5)
    assert learned is not None
    assert naive > 1.15 * 90
    assert abs(learned - 90) < abs(naive - 90) / 2


def test_recovers_a_bimodal_mix() -> None:
    """70 % within 20 s, 30 % after 20 min: p50 under 20 s, p90 past 20 min."""
    rng = random.Random(3)
    data = []
    for _ in range(2000):
        fast = rng.random() < 0.7
        delivered = rng.uniform(0, 20) if fast else 1200 + rng.expovariate(1 / 300)
        data.append(_observe(delivered, lambda: rng.uniform(2, 40)))
    found = estimate.estimate(data)
    p50, p90 = found.quantile(0.5), found.quantile(0.9)
    assert p50 is not None and p90 is not None
    assert 8 < p50 < 20
    assert 1200 < p90 < 2100


def test_hand_made_intervals() -> None:
    """(0, 1] and (1, 2] once each: half the mass in each; an interval containing both cells
    adds to neither more than the other."""
    cells = estimate.turnbull([(0, 1), (1, 2), (0, 2)])
    assert [(a, b) for a, b, _ in cells] == [(0, 1), (1, 2)]
    assert [round(p, 6) for _, _, p in cells] == [0.5, 0.5]


def test_right_censored_mass_is_beyond_what_was_seen() -> None:
    """Expired orders (never answered) leave mass past the last answer: covered < 1, and no
    quantile past it is made up."""
    data = [(0.0, 10.0)] * 60 + [(30.0, math.inf)] * 40
    found = estimate.estimate(data)
    assert abs(found.covered - 0.6) < 1e-6
    assert found.quantile(0.5) is not None and found.quantile(0.9) is None


def test_garbage_intervals_are_ignored() -> None:
    found = estimate.estimate([(5.0, 1.0), (-1.0, 3.0), (math.nan, math.nan), (1.0, math.nan)])
    assert found.quantiles == () or found.covered == 0.0


def test_plan_checks_early_for_a_fast_provider_and_late_for_a_slow_one() -> None:
    fast = estimate.estimate([(0.0, 10.0)] * 100)
    slow = estimate.estimate([(590.0, 600.0)] * 100)
    fast_plan = placement.plan(fast, 20.0, 1.0, 600.0)
    slow_plan = placement.plan(slow, 20.0, 1.0, 600.0)
    assert fast_plan.first_after() <= 10.0
    assert 590.0 <= slow_plan.first_after() <= 600.0


def _summaries() -> st.SearchStrategy[estimate.Estimate]:
    steps = st.lists(st.floats(0.0, 5000.0), min_size=2, max_size=101)

    def build(values: list[float]) -> estimate.Estimate:
        quantiles = []
        total = 0.0
        for value in values:
            total += value
            quantiles.append(total)
        return estimate.Estimate(200, (len(quantiles) - 1) / 100, tuple(quantiles))

    return steps.map(build)


policies = st.builds(
    schedule.Policy,
    first_check_after=st.timedeltas(dt.timedelta(0), dt.timedelta(hours=1)),
    base_delay=st.timedeltas(dt.timedelta(seconds=1), dt.timedelta(minutes=5)),
    factor=st.floats(1.0, 10.0),
    max_delay=st.timedeltas(dt.timedelta(minutes=5), dt.timedelta(hours=2)),
    jitter=st.floats(0.0, 0.99),
    max_attempts=st.none() | st.integers(1, 50),
    give_up_after=st.timedeltas(dt.timedelta(minutes=1), dt.timedelta(days=3)),
    mode=st.just("learned"),
    request_cost=st.timedeltas(dt.timedelta(0), dt.timedelta(minutes=30)),
    min_delay=st.timedeltas(dt.timedelta(0), dt.timedelta(minutes=5)),
    explore=st.floats(0.0, 0.5),
)


@settings(max_examples=300, deadline=None)
@given(
    _summaries(),
    policies,
    st.integers(0, 60),
    st.floats(-1.0, 1.0),
    st.floats(0.0, 1.0, exclude_max=True),
    st.timedeltas(dt.timedelta(0), dt.timedelta(days=4)),
    st.none() | st.timedeltas(dt.timedelta(0), dt.timedelta(hours=3)),
)
def test_learned_placement_never_breaks_the_deadline_rules(
    summary: estimate.Estimate,
    policy: schedule.Policy,
    attempts: int,
    jitter: float,
    explore: float,
    elapsed: dt.timedelta,
    retry_after: dt.timedelta | None,
) -> None:
    """Whatever was learned: never before now; never past the deadline once checked; None
    exactly when backoff would expire too (max_attempts, the deadline); a longer Retry-After
    is honoured up to the deadline; the pause stays within [min_delay, max_delay] spread by
    the jitter."""
    now = T0 + elapsed
    deadline = schedule.deadline(T0, policy)
    plan = placement.plan(
        summary,
        policy.request_cost.total_seconds(),
        policy.min_delay.total_seconds(),
        policy.max_delay.total_seconds(),
    )
    raw = plan.pause_after(elapsed.total_seconds())
    planned = schedule.learned_pause(raw, policy, explore)
    decision = schedule.decide(now, attempts, deadline, policy, jitter, retry_after, planned)
    backoff = schedule.next_check_at(now, attempts, deadline, policy, jitter, retry_after)
    assert (decision.at is None) == (backoff is None)
    if decision.at is None:
        return
    assert now <= decision.at
    if attempts >= 1:
        assert decision.at <= deadline
    if retry_after is not None:
        assert decision.at >= min(now + retry_after, max(deadline, now))
    if planned is not None and retry_after is None and decision.at < deadline:
        low = policy.min_delay.total_seconds() * (1 - policy.jitter)
        high = max(policy.max_delay, policy.min_delay).total_seconds() * (1 + policy.jitter)
        pause = (decision.at - now).total_seconds()
        assert low / 2 - 1e-6 <= pause <= high + 1e-6


@settings(max_examples=200, deadline=None)
@given(_summaries(), st.floats(0.0, 600.0), st.floats(0.0, 60.0), st.floats(60.0, 3600.0))
def test_a_plan_always_moves_forward(
    summary: estimate.Estimate, cost: float, low: float, high: float
) -> None:
    """From any time inside the learned range the next planned check is later."""
    plan = placement.plan(summary, cost, low, high)
    assert len(plan.grid) <= placement.MAX_GRID + 1
    for waited in plan.grid[:-1]:
        pause = plan.pause_after(waited)
        assert pause is None or pause > 0


def test_a_provider_with_nothing_learned_is_backoff() -> None:
    provider = _provider()
    assert models.choose(provider, None, T0).plan is None
    few = {"quantiles": [0.0, 5.0], "covered": 0.01, "samples": 3, "computed_at": T0}
    choice = models.choose(provider, few, T0)
    assert choice.plan is None and "min_samples" in choice.note


def test_a_corrupted_summary_is_backoff_never_a_traceback() -> None:
    provider = _provider()
    good = {"quantiles": [0.0, 5.0, 9.0], "covered": 0.02, "samples": 500, "computed_at": T0}
    assert models.choose(provider, good, T0).plan is not None
    for bad in (
        {"quantiles": [0.0, math.nan]},
        {"quantiles": [0.0, math.inf]},
        {"quantiles": [5.0, 1.0]},
        {"quantiles": [-1.0, 1.0]},
        {"quantiles": [0.0] * 500},
        {"quantiles": "0,1"},
        {"quantiles": None},
        {"covered": math.nan},
        {"covered": 7.0},
        {"samples": -3},
        {"samples": None},
        {"quantiles": [0.0, 1.0, 2.0, 3.0], "covered": 0.01},
    ):
        choice = models.choose(provider, good | bad, T0)
        assert choice.plan is None and "unreadable" in choice.note, bad
    stale = good | {"computed_at": T0 - dt.timedelta(days=1)}
    assert "stale" in models.choose(provider, stale, T0).note
    assert "unreadable" in models.choose(provider, good | {"computed_at": None}, T0).note


def _provider() -> provider_config.ProviderConfig:
    return provider_config.ProviderConfig(
        id="p",
        name="p",
        kind="znet",
        base_url="http://x",
        timeout=5.0,
        max_reply_bytes=65536,
        policy=schedule.Policy(mode="learned", min_samples=100),
    )


def test_a_learned_pause_is_never_shorter_than_min_delay() -> None:
    """An order checked just before a planned check (a late sweep) waits min_delay, not the
    tenth of a second left; an exploring check is halved but still min_delay."""
    summary = estimate.estimate([(float(i), float(i + 1)) for i in range(100)])
    policy = schedule.Policy(mode="learned", min_delay=dt.timedelta(seconds=5))
    plan = placement.plan(summary, 20.0, 5.0, 600.0)
    pauses = [plan.pause_after(at - 0.1) for at in plan.grid[1:]]
    raw = min(p for p in pauses if p is not None)
    assert raw < 5.0  # the plan alone would ask again a moment later
    assert schedule.learned_pause(raw, policy, 0.99) == 5.0
    assert schedule.learned_pause(raw, policy, 0.0) == 5.0
    assert schedule.learned_pause(400.0, policy, 0.0) == 200.0
    assert schedule.learned_pause(5000.0, policy, 0.99) == 600.0
    assert schedule.learned_pause(None, policy, 0.0) is None
    assert schedule.learned_pause(math.nan, policy, 0.0) is None


def test_schedule_keys_are_checked_strictly() -> None:
    """The learned keys are parsed like the others; a backoff config whose max_delay is under
    the default min_delay stays valid (configs written before the learned mode keep
    loading), a learned one is told what to change."""

    def parse(schedule: dict[str, object]) -> config.Config:
        document = {
            "database": {"url": "postgresql://x@127.0.0.1/db"},
            "schedule": schedule,
            "providers": [
                {
                    "id": "p",
                    "name": "p",
                    "kind": "znet",
                    "base_url": "http://x",
                    "kod": "k",
                    "sifre": "sss",
                }
            ],
        }
        return config.parse(document, {})

    assert parse({"max_delay": "1s", "base_delay": "1s"}).providers[0].policy.mode == "backoff"
    learned = parse({"mode": "learned", "request_cost": "45s", "window": "2d", "explore": 0})
    policy = learned.providers[0].policy
    assert policy.learned and policy.request_cost == dt.timedelta(seconds=45)
    assert policy.window == dt.timedelta(days=2) and policy.explore == 0.0
    cases: list[tuple[dict[str, object], str]] = [
        ({"mode": "clever"}, "schedule.mode: expected one of backoff, learned"),
        ({"mode": "learned", "max_delay": "1s", "base_delay": "1s"}, "than min_delay (5s)"),
        ({"explore": 0.9}, "schedule.explore: must be between 0 and 0.5"),
        ({"window_orders": 0}, "schedule.window_orders: must be at least 1"),
        ({"min_samples": "many"}, "schedule.min_samples: expected a whole number"),
        ({"mode": "learned", "stale_after": "1m"}, "shorter than refresh_every (300s)"),
        ({"request_cost": "soon"}, "schedule.request_cost"),
    ]
    for bad, said in cases:
        with pytest.raises(errors.ConfigError) as raised:
            parse(bad)
        assert said in str(raised.value) + " ".join(raised.value.problems), bad
    # One run tells every mistake: a bad mode or explore does not hide the keys' own check.
    with pytest.raises(errors.ConfigError) as raised:
        parse({"mode": "learnt", "explore": 0.9, "window_orders": 0, "stale_after": "1m"})
    told = " ".join(raised.value.problems)
    for said in ("schedule.mode", "schedule.explore", "window_orders", "than refresh_every"):
        assert said in told, told
