"""The learned schedule's cached summaries (sql/011_learned_schedule.sql): refreshed by a
sweep that has work, at most every ``refresh_every`` per provider, and read back checked.

A summary read back is bounded and checked before it is used: a row that is not what this
module writes (edited by hand, a bug) means backoff and a warning, never a traceback. Only a
sweep with something due gets here (`sweeper`), so an idle sweep reads nothing of this."""

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Sequence
from typing import Any

from ordermon import db
from ordermon.config import human
from ordermon.config import providers as provider_config
from ordermon.sweep import estimate, placement, schedule

log = logging.getLogger("ordermon.models")
_LOCK_SPACE = 7170013  # with hashtext(provider_id): one refresher per provider at a time
_MOST_SECONDS = 400 * 86400.0  # no learned time is longer than this (give_up_after's bound)

_SAMPLES = """
WITH recent AS (
    SELECT e.id, e.order_id, e.sent_at FROM ordermon_enrolments e
    WHERE e.provider_id = %(provider)s AND e.state IN ('done', 'held', 'expired')
      AND e.finished_at > %(since)s
    ORDER BY e.finished_at DESC
    LIMIT %(limit)s
)
SELECT extract(epoch FROM k.last_pending - r.sent_at)::float8 AS lower,
       extract(epoch FROM k.first_final - r.sent_at)::float8 AS upper
FROM recent r CROSS JOIN LATERAL (
    SELECT max(a.checked_at) FILTER (WHERE a.outcome = 'processing') AS last_pending,
           min(a.checked_at) FILTER (WHERE a.outcome IN ('completed', 'failed')) AS first_final
    FROM ordermon_attempts a
    WHERE a.order_id = r.order_id AND a.enrolment_id = r.id AND a.counted IS NOT FALSE
) k
"""
_UPSERT = """
INSERT INTO ordermon_schedule_models
    (provider_id, computed_at, samples, covered, quantiles, p50, p90)
VALUES (%(provider)s, %(now)s, %(samples)s, %(covered)s, %(quantiles)s, %(p50)s, %(p90)s)
ON CONFLICT (provider_id) DO UPDATE
SET computed_at = excluded.computed_at, samples = excluded.samples,
    covered = excluded.covered, quantiles = excluded.quantiles, p50 = excluded.p50,
    p90 = excluded.p90
"""
# A date psycopg cannot load ('infinity', a year past 9999: an edited row) reads as NULL,
# which the column never holds: an unreadable summary, not an exception for every provider.
_COMPUTED_AT = """CASE WHEN computed_at > '1970-01-01' AND computed_at < '9000-01-01'
                  THEN computed_at END AS computed_at"""
# Nor is an array longer than any summary (101 quantiles) read whole: NULL, unreadable.
_LOAD = f"""
SELECT provider_id, {_COMPUTED_AT}, samples, covered,
       CASE WHEN cardinality(quantiles) <= %(most)s THEN quantiles END AS quantiles
FROM ordermon_schedule_models WHERE provider_id = ANY(%(ids)s)
"""


@dataclasses.dataclass(frozen=True)
class Choice:
    """What places one provider's checks now: a plan, or backoff (plan None), and why."""

    plan: placement.Plan | None
    note: str
    summary: estimate.Estimate | None = None


def intervals(rows: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each finished order's (L, R]: L its last processing check (0 if none), R its first
    final one (infinity for an expired order, which never had one)."""
    found = []
    for row in rows:
        lower, upper = row["lower"] or 0.0, row["upper"]
        upper = math.inf if upper is None else upper
        if row["lower"] is None and row["upper"] is None:
            continue  # nothing known of it (its attempts pruned)
        # An answer later than a summary may hold (a "sentAt" from years ago) is left out:
        # kept, it would make every summary refused (`checked`) for the whole window.
        if 0 <= lower < upper and (math.isinf(upper) or upper <= _MOST_SECONDS):
            found.append((lower, upper))
    return found


def refresh(
    conn: db.Connection, provider: provider_config.ProviderConfig, now: dt.datetime
) -> bool:
    """Recompute the provider's summary if it is older than refresh_every and no other sweep
    is at it; True when this call recomputed it."""
    policy = provider.policy
    with conn.transaction():
        locked = conn.execute(
            "SELECT pg_try_advisory_xact_lock(%(space)s, hashtext(%(provider)s)) AS ok",
            {"space": _LOCK_SPACE, "provider": provider.id},
        ).fetchone()
        if not locked or not locked["ok"]:
            return False
        row = conn.execute(
            f"SELECT {_COMPUTED_AT} FROM ordermon_schedule_models WHERE provider_id = %(provider)s",
            {"provider": provider.id},
        ).fetchone()
        fresh_since = now - policy.refresh_every
        computed = row["computed_at"] if row is not None else None
        if computed is not None and fresh_since < computed <= now:
            return False
        rows = conn.execute(
            _SAMPLES,
            {"provider": provider.id, "since": now - policy.window, "limit": policy.window_orders},
        ).fetchall()
        found = estimate.estimate(intervals(rows))
        conn.execute(
            _UPSERT,
            {
                "provider": provider.id,
                "now": now,
                "samples": found.samples,
                "covered": found.covered,
                "quantiles": list(found.quantiles),
                "p50": found.quantile(0.5),
                "p90": found.quantile(0.9),
            },
        )
    return True


def load(conn: db.Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    params = {"ids": list(ids), "most": estimate.QUANTILE_STEPS + 1}
    return {row["provider_id"]: dict(row) for row in conn.execute(_LOAD, params)}


def checked(row: dict[str, Any]) -> estimate.Estimate | None:
    """The stored summary, or None when it is not one this module could have written."""
    quantiles, covered, samples = row.get("quantiles"), row.get("covered"), row.get("samples")
    if not isinstance(quantiles, list) or not 1 <= len(quantiles) <= estimate.QUANTILE_STEPS + 1:
        return None
    if not isinstance(covered, float) or not 0.0 <= covered <= 1.0:
        return None
    if not isinstance(samples, int) or samples < 0:
        return None
    values: list[float] = []
    for value in quantiles:
        if not isinstance(value, float) or not 0.0 <= value <= _MOST_SECONDS:
            return None  # NaN and infinity fail this too
        if values and value < values[-1]:
            return None
        values.append(value)
    if (len(values) - 1) / estimate.QUANTILE_STEPS > covered + 1e-6:
        return None
    return estimate.Estimate(samples, covered, tuple(values))


def choose(
    provider: provider_config.ProviderConfig, row: dict[str, Any] | None, now: dt.datetime
) -> Choice:
    """The plan for a learned provider from its stored row, or backoff and why."""
    policy = provider.policy
    if not policy.learned:
        return Choice(None, "backoff (schedule.mode)")
    if row is None:
        return Choice(None, "backoff: nothing learned yet")
    computed = row.get("computed_at")
    summary = checked(row)
    if summary is None or not isinstance(computed, dt.datetime):
        log.warning(
            "the learned schedule of %s is not usable: backoff until it is recomputed",
            provider.name,
        )
        return Choice(None, "backoff: the learned summary is unreadable")
    if computed < now - policy.stale_after:
        return Choice(None, "backoff: the learned summary is stale", summary)
    if summary.samples < policy.min_samples:
        return Choice(
            None,
            f"backoff: {human.plural(summary.samples, 'finished order')} in the window, "
            f"min_samples {policy.min_samples}",
            summary,
        )
    if len(summary.quantiles) < 2 or summary.quantiles[-1] <= 0:
        return Choice(None, "backoff: no final answers in the window", summary)
    plan = placement.plan(
        summary,
        policy.request_cost.total_seconds(),
        policy.min_delay.total_seconds(),
        policy.max_delay.total_seconds(),
    )
    return Choice(plan, f"learned from {human.plural(summary.samples, 'order')}", summary)


def choices(
    conn: db.Connection,
    chosen: Sequence[provider_config.ProviderConfig],
    now: dt.datetime,
    *,
    refreshing: bool = True,
) -> dict[str, Choice]:
    """Each learned provider's choice (refreshed first when due); backoff ones are left out."""
    learned = [p for p in chosen if p.policy.learned]
    if not learned:
        return {}
    if refreshing:
        for provider in learned:
            refresh(conn, provider, now)
    rows = load(conn, [p.id for p in learned])
    return {p.id: choose(p, rows.get(p.id), now) for p in learned}


def planned(
    choice: Choice | None,
    sent_at: dt.datetime,
    attempts: int,
    now: dt.datetime,
    policy: schedule.Policy,
    explore_draw: float,
) -> tuple[float | None, str]:
    """A learned provider's pause for an order unanswered now (None: backoff's), and what
    chose it, in the words `ordermon show` prints; ("", None) for a backoff provider."""
    if choice is None:
        return None, ""
    if choice.plan is None:
        return None, f"{choice.note}, after check {attempts}"
    waited = (now - sent_at).total_seconds()
    pause = schedule.learned_pause(choice.plan.pause_after(waited), policy, explore_draw)
    if pause is None:
        return None, f"backoff after check {attempts}: past what was learned"
    said = f"learned plan ({choice.note}, {figures(choice.plan.estimate)})"
    if explore_draw < policy.explore:
        said += ", an exploring check at half its pause"
    return pause, said


def figures(summary: estimate.Estimate) -> str:
    """``p50 90s, p90 394s``: what was learned, in a few words."""
    parts = []
    for share in (0.5, 0.9):
        value = summary.quantile(share)
        if value is not None:
            parts.append(f"p{int(share * 100)} {value:.0f}s")
    return ", ".join(parts) or "no quantiles"


def first_checks(
    conn: db.Connection, chosen: Sequence[provider_config.ProviderConfig], now: dt.datetime
) -> dict[str, tuple[float, schedule.Policy, str]]:
    """The learned providers' first checks (the plan's, from "sentAt"; no jitter, as
    backoff's first check has none), for enrolment; the others keep first_check_after."""
    policies = {p.id: p.policy for p in chosen}
    return {
        provider_id: (choice.plan.first_after(), policies[provider_id], choice.note)
        for provider_id, choice in choices(conn, chosen, now, refreshing=False).items()
        if choice.plan is not None
    }
