"""`ordermon status`: the picture at a glance, and whether something needs a person.

Every figure is read from the database at the moment of the call; nothing is cached."""

import datetime as dt
from typing import Any

from ordermon import config, db
from ordermon.config import human
from ordermon.events import outbox
from ordermon.sweep import enrolment, health, sweep

NO_SUCCESS_ALARM = dt.timedelta(minutes=5)

_ENROLMENTS = """
SELECT e.provider_id,
       count(*) FILTER (WHERE e.state = 'waiting') AS waiting,
       count(*) FILTER (WHERE e.state = 'waiting' AND e.next_check_at <= %(now)s) AS due,
       count(*) FILTER (WHERE e.state = 'waiting' AND e.claimed_until > %(now)s) AS claimed,
       count(*) FILTER (WHERE e.state = 'held' AND o.status = 'pending'
                        AND o."sentAt" = e.sent_at) AS held,
       count(*) FILTER (WHERE e.state = 'expired' AND o.status = 'pending'
                        AND o."sentAt" = e.sent_at AND o."providerId" = e.provider_id
                        AND o."externalStatus" IN ('sent', 'queued', 'processing')) AS expired,
       min(e.sent_at) FILTER (WHERE e.state = 'waiting') AS oldest_sent_at
FROM ordermon_enrolments e
LEFT JOIN product_orders o ON o.id = e.order_id AND e.state IN ('held', 'expired')
WHERE e.state IN ('waiting', 'held', 'expired')
GROUP BY e.provider_id
"""
_ATTEMPTS = """
SELECT provider_id,
       count(*) FILTER (WHERE applied = 'completed' AND checked_at > %(day)s) AS completed_24h,
       count(*) FILTER (WHERE applied IN ('refunded', 'rejected', 'held')
                        AND checked_at > %(day)s) AS failed_24h,
       count(*) FILTER (WHERE checked_at > %(hour)s) AS checks_1h,
       count(*) FILTER (WHERE outcome = 'error' AND checked_at > %(hour)s) AS errors_1h,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)
           FILTER (WHERE checked_at > %(hour)s) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
           FILTER (WHERE checked_at > %(hour)s) AS p95
FROM ordermon_attempts WHERE checked_at > %(day)s
GROUP BY provider_id
"""
# Why an enrolment is still waiting past its deadline, the first that applies: the sweep
# expires an order only after a check at or past the deadline, so each of these keeps it
# waiting for as long as it lasts.
_OVERDUE = """
SELECT e.provider_id,
       CASE WHEN NOT e.provider_id = ANY(%(configured)s) THEN 'not_configured'
            WHEN s.paused_until > %(now)s THEN 'paused'
            WHEN e.claimed_until IS NOT NULL THEN 'claimed'
            WHEN e.last_checked_at IS NULL THEN 'never_checked'
            WHEN e.last_outcome = 'error' THEN 'failing'
            ELSE 'not_checked_since' END AS reason,
       count(*) AS n, max(e.claimed_until) AS claimed_until
FROM ordermon_enrolments e
LEFT JOIN ordermon_provider_state s ON s.provider_id = e.provider_id
WHERE e.state = 'waiting' AND e.deadline < %(cutoff)s
GROUP BY 1, 2
"""
_WHY = {
    "not_configured": "its provider id is not configured, so no sweep checks it: "
    "check providers[].id",
    "claimed": "claimed by a sweep that may have died (its lease ends {until})",
    "never_checked": "never checked: does a sweep run for this provider (--provider, --limit)?",
    "failing": "its last check failed (error), for the provider's sake or its own: "
    "`ordermon show ORDER_ID`",
    "not_checked_since": "not checked since the deadline: the sweeps are behind",
}
_RUNS = """
SELECT id, command, host, started_at, finished_at, claimed, completed, failed, errors,
       superseded, expired, stopped_by, exit_code
FROM ordermon_runs WHERE command = 'sweep' ORDER BY started_at DESC LIMIT %(limit)s
"""
_LAST_SUCCESS = """
SELECT max(finished_at) AS at FROM ordermon_runs WHERE command = 'sweep' AND exit_code = 0
"""


def gather(
    conn: db.Connection, cfg: config.Config, now: dt.datetime, runs: int = 10
) -> dict[str, Any]:
    """All the figures of `ordermon status`, as plain data (the JSON output)."""
    tz = cfg.timezone
    names = {p.id: p.name for p in cfg.providers}
    enrolments = {r["provider_id"]: r for r in conn.execute(_ENROLMENTS, {"now": now})}
    window = {"day": now - dt.timedelta(hours=24), "hour": now - dt.timedelta(hours=1)}
    attempts = {r["provider_id"]: r for r in conn.execute(_ATTEMPTS, window)}
    unwatched = {u.provider_id: u for u in enrolment.unwatched(conn, sweep.rules(cfg.providers))}
    late = _overdue(conn, list(names), now, now - cfg.sweep.lease)
    ids = set(names) | set(enrolments) | set(unwatched) | set(late)
    states = health.load(conn, sorted(ids))
    rows = []
    for provider_id in sorted(ids, key=lambda i: names.get(i, i)):
        e, a, state = (
            enrolments.get(provider_id, {}),
            attempts.get(provider_id, {}),
            states.get(provider_id),
        )
        checks = a.get("checks_1h") or 0
        rows.append(
            {
                "provider_id": provider_id,
                "name": names.get(provider_id, provider_id or '(no "providerId")'),
                "configured": provider_id in names,
                **{k: e.get(k) or 0 for k in ("waiting", "due", "claimed", "held", "expired")},
                "no_reference": _orders(unwatched.get(provider_id)) if provider_id in names else 0,
                "unwatched": _orders(unwatched.get(provider_id)),
                "overdue": {r: n for r, (n, _) in sorted(late.get(provider_id, {}).items())},
                "completed_24h": a.get("completed_24h") or 0,
                "failed_24h": a.get("failed_24h") or 0,
                "checks_1h": checks,
                "error_rate_1h": round((a.get("errors_1h") or 0) / checks, 4) if checks else 0.0,
                "latency_p50_ms": _rounded(a.get("p50")),
                "latency_p95_ms": _rounded(a.get("p95")),
                "paused_until": _shown(state.paused_until, tz)
                if state and state.paused(now)
                else None,
                "pause_reason": state.reason if state and state.paused(now) else None,
                "breaker_open": bool(state and state.pauses > 0),
            }
        )
    oldest = min(
        (e["oldest_sent_at"] for e in enrolments.values() if e["oldest_sent_at"]), default=None
    )
    last_success = conn.execute(_LAST_SUCCESS).fetchone()
    success_at = last_success["at"] if last_success else None
    figures = {
        "now": _shown(now, tz),
        "dead_events": outbox.dead_count(conn),
        "timezone": cfg.timezone,
        "providers": rows,
        "oldest_waiting_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
        "last_success_at": _shown(success_at, tz),
        "runs": [_run(r, tz, now, cfg) for r in conn.execute(_RUNS, {"limit": runs})],
        # A missing grant otherwise shows only when the first refund (or write) is refused.
        "lacking_grants": db.lacking_grants(conn),
    }
    figures["attention"] = [
        *(u.problem(names) for u in unwatched.values()),
        *_overdue_reasons(late, names, states, tz),
        *attention(figures, success_at, now),
    ]
    return figures


def attention(
    figures: dict[str, Any], success_at: dt.datetime | None, now: dt.datetime
) -> list[str]:
    """Why a person should look now (exit code 3), or nothing."""
    reasons = [
        f"ordermon's role lacks a grant it needs: {line}"
        for line in figures.get("lacking_grants", [])
    ]
    for row in figures["providers"]:
        if row["expired"]:
            reasons.append(
                f"{human.plural(row['expired'], 'expired order')} of {row['name']} "
                f"{_wait(row['expired'])} for a person"
            )
        if row["held"]:
            reasons.append(
                f"{human.plural(row['held'], 'held order')} of {row['name']} "
                f"{_wait(row['held'])} for a person (on_failed: hold): decide "
                f"{_them(row['held'])}, or `ordermon requeue` {_them(row['held'])}"
            )
        if row["breaker_open"] and row["paused_until"]:
            until = human.moment(row["paused_until"])
            reasons.append(f"provider {row['name']} is paused until {until}")
    if figures.get("dead_events"):
        reasons.append(
            f"{human.plural(figures['dead_events'], 'event delivery', 'event deliveries')} "
            f"{'is' if figures['dead_events'] == 1 else 'are'} dead: "
            "`ordermon events list --dead`"
        )
    if success_at is None or now - success_at > NO_SUCCESS_ALARM:
        reasons.append("no successful sweep in the last 5 minutes: is cron running ordermon?")
    return reasons


def _overdue(
    conn: db.Connection, configured: list[str], now: dt.datetime, cutoff: dt.datetime
) -> dict[str, dict[str, tuple[int, dt.datetime | None]]]:
    """Per provider id and reason: the waiting enrolments whose deadline is before ``cutoff``
    (the lease before now: a sweep at work gets that long to check and expire them)."""
    found: dict[str, dict[str, tuple[int, dt.datetime | None]]] = {}
    params = {"configured": configured, "now": now, "cutoff": cutoff}
    for row in conn.execute(_OVERDUE, params):
        found.setdefault(row["provider_id"], {})[row["reason"]] = (row["n"], row["claimed_until"])
    return found


def _overdue_reasons(
    late: dict[str, dict[str, tuple[int, dt.datetime | None]]],
    names: dict[str, str],
    states: dict[str, health.State],
    tz: str,
) -> list[str]:
    reasons = []
    for provider_id, by_reason in sorted(late.items(), key=lambda i: names.get(i[0], i[0])):
        for reason, (count, claimed_until) in sorted(by_reason.items()):
            state = states.get(provider_id)
            if reason == "paused" and state is not None:
                assert state.paused_until is not None
                why = f"the provider is paused ({state.reason}) until "
                why += human.moment(state.paused_until, tz)
            else:
                until = human.moment(claimed_until, tz) if claimed_until else None
                why = _WHY.get(reason, reason).format(until=until)
            reasons.append(
                f"{human.plural(count, 'order')} of {names.get(provider_id, provider_id)} "
                f"{'is' if count == 1 else 'are'} still waiting past the deadline: {why}"
            )
    return reasons


def _run(row: dict[str, Any], tz: str, now: dt.datetime, cfg: config.Config) -> dict[str, Any]:
    finished = row["finished_at"]
    if finished is not None:
        outcome = "ok" if row["exit_code"] == 0 else f"exit {row['exit_code']}"
    elif now - row["started_at"] > cfg.sweep.time_limit + cfg.sweep.lease:
        outcome = "died"
    else:
        outcome = "running"
    return {
        "id": row["id"],
        "host": row["host"],
        "started_at": _shown(row["started_at"], tz),
        "duration_s": round(((finished or now) - row["started_at"]).total_seconds(), 2),
        **{
            k: row[k] for k in ("claimed", "completed", "failed", "errors", "superseded", "expired")
        },
        "stopped_by": row["stopped_by"],
        "result": outcome,
    }


def _shown(when: dt.datetime | None, tz: str) -> str | None:
    """A time for the figures (JSON): ISO-8601 in the configured zone."""
    return human.iso(when, tz) if when else None


def _wait(count: int) -> str:
    return "waits" if count == 1 else "wait"


def _them(count: int) -> str:
    return "it" if count == 1 else "them"


def _orders(found: enrolment.Unwatched | None) -> int:
    return found.orders if found else 0


def _rounded(value: Any) -> int | None:
    return None if value is None else round(float(value))
