"""`ordermon status`: the picture at a glance, and whether something needs a person.

Every figure is read from the database at the moment of the call; nothing is cached."""

import datetime as dt
import zoneinfo
from typing import Any

from ordermon import config, db, health, outbox, providers

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
_UNREFERENCED = """
SELECT o."providerId" AS provider_id, count(*) AS n FROM product_orders o
WHERE o.status = 'pending' AND o."externalStatus" IN ('sent', 'queued', 'processing')
  AND o."providerId" = ANY(%(ids)s) AND o."sentAt" IS NOT NULL
  AND NULLIF(o.provider_referans, '') IS NULL
GROUP BY 1
"""
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
    tz = zoneinfo.ZoneInfo(cfg.timezone)
    names = {p.id: p.name for p in cfg.providers}
    enrolments = {r["provider_id"]: r for r in conn.execute(_ENROLMENTS, {"now": now})}
    window = {"day": now - dt.timedelta(hours=24), "hour": now - dt.timedelta(hours=1)}
    attempts = {r["provider_id"]: r for r in conn.execute(_ATTEMPTS, window)}
    znet_ids = [
        p.id for p in cfg.providers if providers.reference_rule(p.kind) == "provider_referans"
    ]
    unreferenced = {
        r["provider_id"]: r["n"] for r in conn.execute(_UNREFERENCED, {"ids": znet_ids})
    }
    states = health.load(conn, sorted(set(names) | set(enrolments)))
    rows = []
    for provider_id in sorted(set(names) | set(enrolments), key=lambda i: names.get(i, i)):
        e, a, state = (
            enrolments.get(provider_id, {}),
            attempts.get(provider_id, {}),
            states.get(provider_id),
        )
        checks = a.get("checks_1h") or 0
        rows.append(
            {
                "provider_id": provider_id,
                "name": names.get(provider_id, provider_id),
                "configured": provider_id in names,
                **{k: e.get(k) or 0 for k in ("waiting", "due", "claimed", "held", "expired")},
                "no_reference": unreferenced.get(provider_id, 0),
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
    }
    figures["attention"] = attention(figures, success_at, now)
    return figures


def attention(
    figures: dict[str, Any], success_at: dt.datetime | None, now: dt.datetime
) -> list[str]:
    """Why a person should look now (exit code 3), or nothing."""
    reasons = []
    for row in figures["providers"]:
        if row["expired"]:
            reasons.append(f"{row['expired']} expired order(s) of {row['name']} wait for a person")
        if row["breaker_open"] and row["paused_until"]:
            reasons.append(f"provider {row['name']} is paused until {row['paused_until']}")
    if figures.get("dead_events"):
        reasons.append(
            f"{figures['dead_events']} event deliveries are dead: `ordermon events list --dead`"
        )
    if success_at is None or now - success_at > NO_SUCCESS_ALARM:
        reasons.append("no successful sweep in the last 5 minutes: is cron running ordermon?")
    return reasons


def _run(
    row: dict[str, Any], tz: zoneinfo.ZoneInfo, now: dt.datetime, cfg: config.Config
) -> dict[str, Any]:
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


def _shown(when: dt.datetime | None, tz: zoneinfo.ZoneInfo) -> str | None:
    return when.astimezone(tz).isoformat(timespec="seconds") if when else None


def _rounded(value: Any) -> int | None:
    return None if value is None else round(float(value))
