"""Prometheus metrics through node_exporter's textfile collector: written after each
successful sweep, atomically (a temporary file renamed over the old one), in base units with
low-cardinality labels (providers and outcomes, never an order). Every label value is escaped:
a provider id that no provider is configured with comes from the shop's table, whatever it is.

monitoring/ordermon-alerts.yml and monitoring/grafana-ordermon.json use these names; a test
holds them to what this file writes."""

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

from ordermon import db

# Unconfigured provider ids with unwatched orders named one by one; the rest are summed.
UNWATCHED_IDS = 20
OTHER_IDS = "(others)"
QUANTILES = (0.5, 0.9, 0.99)
# The provider's final answers, however the order ended; held is one (a person decides next).
FINAL = ["completed", "refunded", "rejected", "held"]
# The attempts of the last hour (ordermon_attempts_checked_at), each joined to its enrolment
# by primary key: as cheap as the hour is busy, however much history is kept.
_TIME_TO_FINAL = """
SELECT a.provider_id, count(*) AS n,
       percentile_cont(%(quantiles)s::float8[]) WITHIN GROUP
           (ORDER BY extract(epoch FROM a.checked_at - e.sent_at)) AS q
FROM ordermon_attempts a
JOIN ordermon_enrolments e ON e.id = a.enrolment_id
WHERE a.checked_at > %(since)s AND a.checked_at <= %(now)s AND a.applied = ANY(%(final)s)
GROUP BY a.provider_id
ORDER BY a.provider_id
"""


def labels(**values: str) -> str:
    """``{name="value",...}``, each value escaped as the exposition format wants."""
    if not values:
        return ""
    escaped = (
        name + '="' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        for name, value in values.items()
    )
    return "{" + ",".join(escaped) + "}"


def render(
    figures: dict[str, Any],
    run_checks: list[dict[str, Any]],
    run_seconds: float,
    last_success: dt.datetime | None,
    finals: list[dict[str, Any]] | None = None,
) -> str:
    """The exposition text; ``figures`` is `status.gather`'s output, ``finals`` is
    `time_to_final`'s."""
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labelled} {float(value)!r}" for labelled, value in samples)

    metric(
        "ordermon_last_success_timestamp_seconds",
        "gauge",
        "Unix time at which the last successful sweep finished.",
        [("", last_success.timestamp() if last_success else 0.0)],
    )
    metric(
        "ordermon_run_duration_seconds", "gauge", "Duration of the last sweep.", [("", run_seconds)]
    )
    metric(
        "ordermon_run_checks",
        "gauge",
        "Provider checks made by the last sweep.",
        [(labels(provider=r["provider"], outcome=r["outcome"]), r["n"]) for r in run_checks],
    )
    # An unknown id from the shop's table has only unwatched orders (its own metric, capped):
    # as a provider="..." series it could flood the gauges or shadow a configured name.
    rows = [
        r
        for r in figures["providers"]
        if r["configured"] or any(r[k] for k in ("waiting", "expired", "held"))
    ]
    for key, name, text in (
        ("waiting", "ordermon_orders_waiting", "Orders ordermon is watching."),
        ("expired", "ordermon_orders_expired", "Expired orders still waiting for a person."),
        ("held", "ordermon_orders_held", "Held orders (on_failed: hold) waiting for a person."),
    ):
        metric(name, "gauge", text, [(labels(provider=r["name"]), r[key]) for r in rows])
    metric(
        "ordermon_orders_unwatched",
        "gauge",
        "Dispatched orders no configured provider watches: an unknown provider id, "
        "or no reference to ask the provider by.",
        _unwatched(figures["providers"]),
    )
    metric(
        "ordermon_provider_paused",
        "gauge",
        "1 while a provider is paused.",
        [(labels(provider=r["name"]), 1.0 if r["paused_until"] else 0.0) for r in rows],
    )
    metric(
        "ordermon_oldest_waiting_age_seconds",
        "gauge",
        "Age of the oldest watched order.",
        [("", figures["oldest_waiting_age_s"] or 0.0)],
    )
    metric(
        "ordermon_webhook_deliveries_dead",
        "gauge",
        "Webhook deliveries given up on (`ordermon events list --dead`).",
        [("", figures["dead_events"])],
    )
    finals = finals or []
    metric(
        "ordermon_time_to_final_orders",
        "gauge",
        "Orders that got their final answer in the last hour (the quantiles' sample).",
        [(labels(provider=f["provider"]), f["n"]) for f in finals],
    )
    metric(
        "ordermon_time_to_final_seconds",
        "gauge",
        'Time from "sentAt" to the final answer, over the orders of the last hour.',
        [
            (labels(provider=f["provider"], quantile=str(q)), value)
            for f in finals
            if f["n"]
            for q, value in zip(QUANTILES, f["q"], strict=True)
        ],
    )
    return "\n".join(lines) + "\n"


def _unwatched(rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Per provider id (with its name when configured); beyond UNWATCHED_IDS unconfigured
    ids with orders, the rest summed under OTHER_IDS so the series stay few."""
    samples = [
        (labels(provider_id=r["provider_id"], provider=r["name"]), r["unwatched"])
        for r in rows
        if r["configured"]
    ]
    unknown = sorted(
        (
            (r["provider_id"], r["unwatched"])
            for r in rows
            if not r["configured"] and r["unwatched"]
        ),
        key=lambda item: (-item[1], item[0]),
    )
    samples += [(labels(provider_id=i), n) for i, n in unknown[:UNWATCHED_IDS]]
    if len(unknown) > UNWATCHED_IDS:
        samples.append((labels(provider_id=OTHER_IDS), sum(n for _, n in unknown[UNWATCHED_IDS:])))
    return samples


def run_checks(conn: db.Connection, run_id: int, names: dict[str, str]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT provider_id, outcome, count(*) AS n FROM ordermon_attempts "
        "WHERE run_id = %(run)s GROUP BY 1, 2 ORDER BY 1, 2",
        {"run": run_id},
    )
    return [
        {"provider": names.get(r["provider_id"], "unknown"), "outcome": r["outcome"], "n": r["n"]}
        for r in rows
    ]


def time_to_final(
    conn: db.Connection, now: dt.datetime, names: dict[str, str]
) -> list[dict[str, Any]]:
    """Per configured provider: how many orders got their final answer in the hour before
    ``now`` and the QUANTILES of their time from "sentAt" (none when there were none)."""
    found = {
        r["provider_id"]: r
        for r in conn.execute(
            _TIME_TO_FINAL,
            {
                "quantiles": list(QUANTILES),
                "since": now - dt.timedelta(hours=1),
                "now": now,
                "final": FINAL,
            },
        )
    }
    return [
        {
            "provider": name,
            "n": found[provider_id]["n"] if provider_id in found else 0,
            "q": list(found[provider_id]["q"]) if provider_id in found else [],
        }
        for provider_id, name in sorted(names.items(), key=lambda item: item[1])
    ]


def write(path: Path, text: str) -> None:
    """Replace ``path`` atomically: the collector never reads half a file. Its directory is
    the operator's: never created here."""
    handle, temporary = tempfile.mkstemp(prefix=".ordermon-", suffix=".prom.tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
