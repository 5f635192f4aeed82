"""Prometheus metrics through node_exporter's textfile collector: written after each
successful sweep, atomically (a temporary file renamed over the old one), in base units with
low-cardinality labels (providers and outcomes, never an order)."""

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

from ordermon import db


def render(
    figures: dict[str, Any],
    run_checks: list[dict[str, Any]],
    run_seconds: float,
    last_success: dt.datetime | None,
) -> str:
    """The exposition text; ``figures`` is `status.gather`'s output."""
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {float(value)!r}" for labels, value in samples)

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
        [(f'{{provider="{r["provider"]}",outcome="{r["outcome"]}"}}', r["n"]) for r in run_checks],
    )
    rows = figures["providers"]
    metric(
        "ordermon_orders_waiting",
        "gauge",
        "Orders ordermon is watching.",
        [(f'{{provider="{r["name"]}"}}', r["waiting"]) for r in rows],
    )
    metric(
        "ordermon_orders_expired",
        "gauge",
        "Expired orders still waiting for a person.",
        [(f'{{provider="{r["name"]}"}}', r["expired"]) for r in rows],
    )
    metric(
        "ordermon_provider_paused",
        "gauge",
        "1 while a provider is paused.",
        [(f'{{provider="{r["name"]}"}}', 1.0 if r["paused_until"] else 0.0) for r in rows],
    )
    metric(
        "ordermon_oldest_waiting_age_seconds",
        "gauge",
        "Age of the oldest watched order.",
        [("", figures["oldest_waiting_age_s"] or 0.0)],
    )
    return "\n".join(lines) + "\n"


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
