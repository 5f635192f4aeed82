"""Everything ordermon shows a person (rich) or a script (JSON)."""

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from ordermon import runs


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str, indent=2) + "\n")


def sweep_summary(report: dict[str, Any]) -> str:
    parts = [f"{report.get(name, 0)} {name}" for name in runs.RUN_COUNTS]
    line = f"sweep #{report['run_id']}: " + ", ".join(parts) + f" in {report['seconds']:.1f}s"
    if report.get("stopped_by"):
        line += f" (stopped by {report['stopped_by']})"
    return line


def check_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key in ("order_id", "provider", "reference", "outcome", "pin", "message"):
        if result.get(key) is not None:
            table.add_row(key.replace("_", " "), str(result[key]))
    status = result.get("http_status")
    table.add_row("reply", f"HTTP {status}" if status else "no reply")
    table.add_row("latency", f"{result['latency_ms']} ms")
    if result.get("excerpt"):
        table.add_row("excerpt", repr(result["excerpt"]))
    applied = result.get("applied")
    table.add_row("recorded", applied if applied else "nothing (--dry-run)")
    Console().print(table)


def attempt_line(order_id: str, provider: str, outcome: str, applied: str, message: str) -> str:
    return f"{order_id} {provider}: {outcome} -> {applied}" + (f" ({message})" if message else "")


def provider_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="providers")
    for column in ("name", "kind", "base URL", "limits", "state", "last hour", "probe"):
        table.add_column(column)
    for row in rows:
        limits = row["limits"]
        rate = (
            f"{limits['rate_limit_per_s']:g}/s" if limits["rate_limit_per_s"] else "no rate limit"
        )
        checks = row["checks_last_hour"]
        hour = (
            "-" if checks is None else f"{checks} checks, {row['error_rate_last_hour']:.0%} errors"
        )
        table.add_row(
            row["name"],
            row["kind"],
            row["base_url"],
            f"timeout {limits['timeout_s']:g}s, {limits['max_concurrency']} in flight, {rate}, "
            f"batch {limits['batch_size']}",
            row["state"],
            hour,
            row["probe"] or "",
        )
    Console().print(table)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


class _Bar:
    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None

    def start(self, total: int) -> None:
        from rich.console import Console

        # Only a sweep with more than a screenful of work gets a bar.
        if total > Console().size.height:
            self._progress.start()
            self._task = self._progress.add_task("checking", total=total)

    def advance(self, done: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, done)


@contextlib.contextmanager
def progress(enabled: bool) -> Iterator[_Bar | None]:
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    bar = Progress(transient=True)
    try:
        yield _Bar(bar)
    finally:
        bar.stop()


def status_view(figures: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"ordermon status at {figures['now']}")
    columns = (
        "provider",
        "waiting",
        "due",
        "claimed",
        "expired",
        "held",
        "no ref",
        "done 24h",
        "failed 24h",
        "p50/p95 1h",
        "errors 1h",
        "state",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("provider", "state") else "right")
    for row in figures["providers"]:
        latency = (
            f"{row['latency_p50_ms']}/{row['latency_p95_ms']} ms"
            if row["latency_p50_ms"] is not None
            else "-"
        )
        state = f"paused until {row['paused_until']}" if row["paused_until"] else "ok"
        if not row["configured"]:
            state = "not configured"
        table.add_row(
            row["name"],
            *(
                str(row[k])
                for k in (
                    "waiting",
                    "due",
                    "claimed",
                    "expired",
                    "held",
                    "no_reference",
                    "completed_24h",
                    "failed_24h",
                )
            ),
            latency,
            f"{row['error_rate_1h']:.0%}",
            state,
        )
    console.print(table)
    age = figures["oldest_waiting_age_s"]
    console.print(f"oldest waiting order: {_age(age) if age is not None else 'none waiting'}")
    console.print(f"dead webhook deliveries: {figures.get('dead_events', 0)}")
    runs = Table(title="last runs")
    for column in (
        "started",
        "host",
        "seconds",
        "claimed",
        "completed",
        "failed",
        "errors",
        "result",
    ):
        runs.add_column(column)
    for run in figures["runs"]:
        runs.add_row(
            run["started_at"],
            run["host"] or "",
            f"{run['duration_s']:.1f}",
            *(str(run[k]) for k in ("claimed", "completed", "failed", "errors")),
            run["result"] + (f" ({run['stopped_by']})" if run["stopped_by"] else ""),
        )
    if figures["runs"]:
        console.print(runs)
    if figures["attention"]:
        for reason in figures["attention"]:
            console.print(f"[bold red]needs a person:[/] {reason}")
    else:
        console.print("[green]nothing needs a person[/]")


def order_view(picture: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    order = picture["order"]
    summary = Table(show_header=False, box=None, title=f"order {order['id']}")
    for key in (
        "order_no",
        "status",
        "external_status",
        "provider",
        "provider_referans",
        "external_order_id",
        "sent_at",
        "last_sync_at",
        "completed_at",
        "last_message",
        "pin_stored",
        "amount",
        "currency",
    ):
        summary.add_row(key.replace("_", " "), str(order.get(key)))
    if picture["refund"]:
        summary.add_row(
            "refunded", f"{picture['refund']['amount']} at {picture['refund']['refunded_at']}"
        )
    console.print(summary)
    for enrolment in picture["enrolments"]:
        console.print(
            f"dispatch {enrolment['reference']} sent {enrolment['sent_at']}: "
            f"[bold]{enrolment['state']}[/], {enrolment['attempts']} attempt(s), next check "
            f"{enrolment['next_check_at']}, deadline {enrolment['deadline']}"
            + (
                f", claimed until {enrolment['claimed_until']}"
                if enrolment["claimed_until"]
                else ""
            )
        )
    timeline = Table(title="attempts")
    for column in ("time", "provider", "ms", "HTTP", "outcome", "applied", "message", "reply"):
        timeline.add_column(column)
    for attempt in picture["attempts"]:
        timeline.add_row(
            attempt["checked_at"],
            attempt["provider"],
            str(attempt["latency_ms"]),
            str(attempt["http_status"] or "-"),
            attempt["outcome"],
            attempt["applied"] or "",
            attempt["message"] or "",
            (attempt["excerpt"] or "")[:60],
        )
    console.print(timeline)


def _age(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def events_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="events")
    for column in (
        "event",
        "type",
        "order",
        "created",
        "webhook",
        "delivery",
        "attempts",
        "last error",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["type"],
            str(row["order_id"]),
            f"{row['created_at']:%Y-%m-%d %H:%M:%S}",
            row["webhook"] or "-",
            row["state"] or "-",
            str(row["attempts"] or 0),
            row["last_error"] or "",
        )
    Console().print(table)
