"""Everything ordermon shows a person (rich) or a script (JSON)."""

import json
import sys
from typing import Any

SUMMARY_ORDER = (
    "enrolled",
    "claimed",
    "completed",
    "failed",
    "processing",
    "error",
    "superseded",
    "expired",
)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str, indent=2) + "\n")


def sweep_summary(report: dict[str, Any]) -> str:
    parts = [f"{report.get(name, 0)} {name}" for name in SUMMARY_ORDER]
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
