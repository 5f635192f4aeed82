"""`ordermon report`: how the providers performed over a period, as plain data.

Every figure is computed in the database (ops/report_sql.py); this module only shapes the
rows: per provider, the time from "sentAt" to the final state (percentiles and a histogram
with fixed edges), the outcome mix per day, checks per finished order, error rate and latency
per hour, refunds per day per currency, the backlog now by age; and the slowest and the
most-checked orders of the period."""

import datetime as dt
import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ordermon import config, db, errors
from ordermon.config import human
from ordermon.ops import report_sql as sql

DEFAULT_PERIOD = dt.timedelta(days=7)
MAX_PERIOD = dt.timedelta(days=366)
LIST_LENGTH = 10
OUTCOMES = ("completed", "refunded", "rejected", "held", "expired")
# Seconds from "sentAt" to the final state: [0, 10s), [10s, 30s), ... [1h, ∞).
TIME_EDGES = (0, 10, 30, 60, 120, 300, 600, 1800, 3600)
NO_CURRENCY = '(no "sellPriceCurrency")'
# Seconds since "sentAt" of the orders still waiting.
BACKLOG_EDGES = (0, 300, 900, 3600, 21600, 86400)


def period(value: str | None) -> dt.timedelta:
    """``--since``: a duration longer than 0 and at most MAX_PERIOD (a usage error else)."""
    if value is None:
        return DEFAULT_PERIOD
    try:
        parsed = config.parse_duration(value, "--since")
    except errors.ConfigError as exc:
        raise errors.UsageError(str(exc)) from None
    if parsed <= dt.timedelta(0):
        raise errors.UsageError("--since: must be longer than 0s")
    if parsed > MAX_PERIOD:
        raise errors.UsageError(f"--since: must be at most {MAX_PERIOD.days}d")
    return parsed


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """``0s-10s``, ..., ``1h+``: the buckets of ``edges`` (width_bucket's 1..len)."""
    shown = [_short(e) for e in edges]
    return [f"{a}-{b}" for a, b in itertools.pairwise(shown)] + [f"{shown[-1]}+"]


def gather(
    conn: db.Connection,
    cfg: config.Config,
    now: dt.datetime,
    since: dt.timedelta = DEFAULT_PERIOD,
    provider_names: Sequence[str] = (),
) -> dict[str, Any]:
    """All the figures of `ordermon report` (the JSON output), read in one snapshot: a sweep
    committing between two queries would make them disagree (an order in the histogram and
    not in the count). Ends the caller's open transaction (its reads) first. The
    transaction's settings suit a report's few large queries (sql.SETTINGS)."""
    if not conn.autocommit:
        conn.commit()
    with conn.transaction():
        conn.execute(sql.SNAPSHOT)
        for setting in sql.SETTINGS:
            conn.execute(setting)
        return _figures(conn, cfg, now, since, provider_names)


def _figures(
    conn: db.Connection,
    cfg: config.Config,
    now: dt.datetime,
    since: dt.timedelta,
    provider_names: Sequence[str],
) -> dict[str, Any]:
    tz = cfg.timezone
    names = {p.id: p.name for p in cfg.providers}
    ids = [p.id for p in cfg.providers if p.name in provider_names] if provider_names else None
    start = now - since
    params: dict[str, Any] = {
        "since": start,
        "now": now,
        "tz": tz,
        "providers": ids,
        "edges": list(TIME_EDGES),
        "limit": LIST_LENGTH,
    }
    found: dict[str, dict[str, Any]] = {}

    def of(provider_id: str) -> dict[str, Any]:
        if provider_id not in found:
            found[provider_id] = _empty(provider_id, names)
        return found[provider_id]

    figures = _finished(conn, params)
    for r in figures["time_to_final"]:
        row = of(r["provider_id"])
        row["finished"] = r["finished"]
        row["time_to_final_s"] = {k: _round(r[k]) for k in ("p50", "p90", "p99")}
        row["checks_per_order"] = {"mean": _round(r["checks_mean"]), "p90": _round(r["checks_p90"])}
    for r in figures["histogram"]:
        # Bucket 0: a final state before "sentAt" (the shop's clock ahead), counted in the
        # first bucket, not in the last (a list index of -1).
        of(r["provider_id"])["histogram"][max(r["bucket"], 1) - 1]["count"] += r["n"]
    for r in figures["outcomes"]:
        days = of(r["provider_id"])["outcomes_per_day"]
        day = days.setdefault(r["day"], dict.fromkeys(OUTCOMES, 0))
        day[r["outcome"]] = r["n"]
    for r in conn.execute(sql.HOURLY, params):
        of(r["provider_id"])["hourly"].append(
            {
                "hour": human.iso(r["hour"], tz),
                "checks": r["checks"],
                "errors": r["errors"],
                "error_rate": round(r["errors"] / r["checks"], 4),
                "latency_p50_ms": _round(r["p50"]),
                "latency_p95_ms": _round(r["p95"]),
            }
        )
    for r in conn.execute(sql.REFUNDS, params):
        per_day = of(r["provider_id"])["refunds_per_day"]
        per_day.append(
            {
                "day": r["day"].isoformat(),
                # The shop's column: a NULL would not sort beside a currency.
                "currency": NO_CURRENCY if r["currency"] is None else r["currency"],
                "count": r["n"],
                "amount": str(r["amount"]),
            }
        )
    for r in conn.execute(sql.BACKLOG, params | {"edges": list(BACKLOG_EDGES)}):
        row = of(r["provider_id"])
        row["backlog"][max(r["bucket"], 1) - 1]["count"] += r["n"]
        row["waiting"] += r["n"]
    for row in found.values():
        row["outcomes_per_day"] = [
            {"day": day, **mix} for day, mix in sorted(row["outcomes_per_day"].items())
        ]
        row["hourly"].sort(key=lambda h: h["hour"])
        row["refunds_per_day"].sort(key=lambda r: (r["day"], r["currency"]))
        row["refund_totals"] = _totals(row["refunds_per_day"])
    # A refund's order may have no "providerId" (None) beside one of "": both sort as "".
    providers = sorted(found.values(), key=lambda r: (r["name"], r["provider_id"] or ""))
    return {
        "now": human.iso(now, tz),
        "since": human.iso(start, tz),
        "period_s": since.total_seconds(),
        "timezone": tz,
        "providers": providers,
        "slowest": [_order(r, names, tz) for r in figures["slowest"]],
        "most_checked": [_order(r, names, tz) for r in figures["most_checked"]],
        "empty": not providers,
    }


def _finished(conn: db.Connection, params: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The figures of the period's finished enrolments (sql.FINISHED: one row of JSON lists;
    a figure without rows is NULL there, an empty list here)."""
    row = conn.execute(sql.FINISHED, params).fetchone()
    assert row is not None  # an aggregate without GROUP BY: always one row
    return {name: list(value or ()) for name, value in row.items()}


def _empty(provider_id: str, names: dict[str, str]) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "name": names.get(provider_id, provider_id or '(no "providerId")'),
        "configured": provider_id in names,
        "finished": 0,
        "time_to_final_s": {"p50": None, "p90": None, "p99": None},
        "histogram": [
            {"bucket": label, "from_s": edge, "count": 0}
            for label, edge in zip(bucket_labels(TIME_EDGES), TIME_EDGES, strict=True)
        ],
        "checks_per_order": {"mean": None, "p90": None},
        "outcomes_per_day": {},
        "hourly": [],
        "refunds_per_day": [],
        "waiting": 0,
        "backlog": [
            {"age": label, "from_s": edge, "count": 0}
            for label, edge in zip(bucket_labels(BACKLOG_EDGES), BACKLOG_EDGES, strict=True)
        ],
    }


def _totals(per_day: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, list[Any]] = {}
    for r in per_day:
        total = totals.setdefault(r["currency"], [0, Decimal(0)])
        total[0] += r["count"]
        total[1] += Decimal(r["amount"])
    return [
        {"currency": c, "count": n, "amount": str(amount)}
        for c, (n, amount) in sorted(totals.items())
    ]


def _order(r: dict[str, Any], names: dict[str, str], tz: str) -> dict[str, Any]:
    return {
        "order_id": str(r["order_id"]),
        "order_no": r["order_no"],
        "provider": names.get(r["provider_id"], r["provider_id"]),
        "time_to_final_s": _round(r["seconds"]),
        "checks": r["checks"],
        "outcome": r["outcome"],
        # JSON text (sql.FINISHED): ISO 8601 with its offset, to the microsecond.
        "finished_at": human.iso(dt.datetime.fromisoformat(r["finished_at"]), tz),
    }


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def _short(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
