"""Everything ordermon shows a person (rich) or a script (JSON).

Text from outside (providers, the shop's rows, the operator) is shown as text: it reaches Rich
only as ``rich.text.Text`` through `shown`, which escapes control characters visibly, and the
console interprets no markup, emoji codes or highlighting. Only ordermon's own fixed labels
carry styles."""

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ordermon.cli import tables
from ordermon.config import human
from ordermon.sweep import runs

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ordermon.providers import base

# C0 (newline and tab included: one value, one line), DEL, C1, lone surrogates, the bidi
# embedding/override/isolate controls and the Unicode line separators: all of them can move
# the cursor, forge lines, reorder what is read or crash the encoder.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What json.dumps(ensure_ascii=False) leaves raw inside strings, escaped as JSON escapes.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def shown(value: object, limit: int | None = None) -> str:
    """``value`` as a person may see it on one line: control characters, lone surrogates and
    bidi controls escaped visibly (``\\x1b``, ``\\n``, ``\\ud800``); cut to ``limit``
    characters with "…" when given. Pure."""
    text = value if isinstance(value, str) else str(value)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    return _UNSAFE.sub(_escape, text) + ("…" if cut else "")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def cell(value: object) -> "Text":
    """Outside text as a table cell: shown, never interpreted."""
    from rich.text import Text

    return Text("" if value is None else shown(value))


def _console() -> "Console":
    return tables.console()


def _table(title: str | None, columns: tuple[str, ...], **options: Any) -> "Table":
    return tables.table(cell(title) if title else None, columns, **options)


def when(value: str | None) -> str:
    """A time from the figures (ISO-8601, already in the configured zone) for a person."""
    return human.moment(value) if value else "-"


def print_json(data: Any) -> None:
    """Exact JSON: what json.dumps leaves raw (C1, lone surrogates, bidi) is \\u-escaped, so
    the output never crashes the encoder nor steers a terminal, and parses to the same data."""
    text = json.dumps(data, ensure_ascii=False, default=str, indent=2)
    sys.stdout.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


PIN_MASK = "••••••"  # the same whatever the PIN's length, so it does not tell it
PIN_SHOWN = 4  # the last characters a masked PIN shows, of a PIN at least twice as long


def mask_pin(pin: str) -> str:
    """The PIN as a fixed mask and its last 4 characters; a PIN shorter than 8 shows none
    (never more than half of it), an empty one stays empty."""
    if not pin:
        return ""
    return PIN_MASK + (pin[-PIN_SHOWN:] if len(pin) >= 2 * PIN_SHOWN else "")


def masked_check(result: dict[str, Any], show_pin: bool) -> dict[str, Any]:
    """`check`'s result with the PIN masked, also where the message or excerpt repeat it."""
    pin = result.get("pin")
    if show_pin or not pin:
        return result | {"pin_masked": False}
    masked = mask_pin(pin)
    hidden = {
        key: result[key].replace(pin, masked)
        for key in ("message", "excerpt")
        if isinstance(result.get(key), str)
    }
    return result | hidden | {"pin": masked, "pin_masked": True}


def sweep_summary(report: dict[str, Any]) -> str:
    parts = [f"{report.get(name, 0)} {name}" for name in runs.RUN_COUNTS]
    line = f"sweep #{report['run_id']}: " + ", ".join(parts) + f" in {report['seconds']:.1f}s"
    if report.get("stopped_by"):
        line += f" (stopped by {shown(report['stopped_by'])})"
    return line


def check_result(result: dict[str, Any], show_pin: bool = False) -> None:
    result = masked_check(result, show_pin)
    table = _table(None, (), show_header=False, box=None)
    tables.column(table, style="bold")
    tables.column(table)
    for key in ("order_id", "provider", "reference", "outcome", "pin", "message"):
        if result.get(key) is not None:
            table.add_row(key.replace("_", " "), cell(result[key]))
    status = result.get("http_status")
    table.add_row("reply", f"HTTP {status}" if status else "no reply")
    table.add_row("latency", f"{result['latency_ms']} ms")
    if result.get("excerpt"):
        table.add_row("excerpt", cell(result["excerpt"]))
    applied = result.get("applied")
    table.add_row("recorded", cell(applied) if applied else "nothing (--dry-run)")
    _console().print(table)


def attempt_line(order_id: str, provider: str, check: "base.Check | None", applied: str) -> str:
    """`sweep -v`'s line for one order; a superseded one says an admin's change won."""
    if check is None:
        line = (
            f"{order_id} {provider}: superseded, not asked (the order was decided or re-sent "
            "before its check)"
        )
    elif applied == "superseded":
        line = (
            f"{order_id} {provider}: {check.answer.outcome} -> superseded (the order was "
            "decided or re-sent while it was checked, or another run took it over; this "
            "answer changed nothing)"
        )
    else:
        message = check.answer.message or ""
        line = f"{order_id} {provider}: {check.answer.outcome} -> {applied}" + (
            f" ({message})" if message else ""
        )
    return shown(line)


def provider_table(rows: list[dict[str, Any]]) -> None:
    columns = ("name", "kind", "base URL", "limits", "state", "last hour", "schedule", "probe")
    table = _table("providers", columns)
    for row in rows:
        limits = row["limits"]
        rate = (
            f"{limits['rate_limit_per_s']:g}/s" if limits["rate_limit_per_s"] else "no rate limit"
        )
        checks = row["checks_last_hour"]
        hour = (
            "-"
            if checks is None
            else f"{human.plural(checks, 'check')}, {row['error_rate_last_hour']:.0%} errors"
        )
        limits_text = (
            f"timeout {limits['timeout_s']:g}s, {limits['max_concurrency']} in flight, {rate}, "
            f"batch {limits['batch_size']}"
        )
        cells = (row["name"], row["kind"], row["base_url"], limits_text, row["state"], hour)
        schedule = schedule_text(row["schedule"])
        table.add_row(*(cell(value) for value in (*cells, schedule, row["probe"] or "")))
    _console().print(table)


def schedule_text(schedule: dict[str, Any]) -> str:
    """``backoff``, or ``learned: 300 orders, p50 1m30s, p90 7m`` and what is in use."""
    if schedule.get("mode") != "learned":
        return "backoff"
    figures = [f"{schedule.get('samples', 0)} orders"]
    for key in ("p50_s", "p90_s"):
        if schedule.get(key) is not None:
            figures.append(f"{key[:3]} {_span(schedule[key])}")
    text = "learned: " + ", ".join(figures)
    if schedule.get("in_use") != "learned":
        text += f"; {schedule.get('why', 'backoff')}"
    if schedule.get("computed_at"):
        # The figures are the stored summary's, not a live count: say when they were taken.
        from ordermon.config import human

        text += f" (at the last refresh, {human.moment(schedule['computed_at'])})"
    return text


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"
    return f"{seconds / 3600:.1f}h"


class _Bar:
    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None

    def start(self, total: int) -> None:
        # Only a sweep with more than a screenful of work gets a bar.
        if total > _console().size.height:
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

    bar = Progress(transient=True, console=_console())
    try:
        yield _Bar(bar)
    finally:
        bar.stop()


_STATUS_COUNTS = (
    *("waiting", "due", "claimed", "expired", "held", "no_reference"),
    *("completed_24h", "failed_24h"),
)
_STATUS_HEADERS = (
    *("provider", "waiting", "due", "claimed", "expired", "held", "no ref", "done 24h"),
    *("failed 24h", "p50/p95 1h", "errors 1h", "state"),
)


def status_view(figures: dict[str, Any]) -> None:
    from rich.text import Text

    console = _console()
    table = _table(f"ordermon status at {human.moment(figures['now'])}", ())
    for column in _STATUS_HEADERS:
        tables.column(table, column, justify="left" if column in ("provider", "state") else "right")
    for row in figures["providers"]:
        latency = (
            f"{row['latency_p50_ms']}/{row['latency_p95_ms']} ms"
            if row["latency_p50_ms"] is not None
            else "-"
        )
        state = f"paused until {when(row['paused_until'])}" if row["paused_until"] else "ok"
        if not row["configured"]:
            state = "not configured"
        counts = (str(row[k]) for k in _STATUS_COUNTS)
        cells = (row["name"], *counts, latency, f"{row['error_rate_1h']:.0%}", state)
        table.add_row(*(cell(value) for value in cells))
    console.print(table)
    age = figures["oldest_waiting_age_s"]
    console.print(f"oldest waiting order: {_age(age) if age is not None else 'none waiting'}")
    console.print(f"dead webhook deliveries: {figures.get('dead_events', 0)}")
    columns = ("started", "host", "seconds", "claimed", "completed", "failed", "errors", "result")
    runs_table = _table("last runs", columns)
    for run in figures["runs"]:
        result = run["result"] + (f" ({run['stopped_by']})" if run["stopped_by"] else "")
        cells = (
            when(run["started_at"]),
            run["host"] or "",
            f"{run['duration_s']:.1f}",
            *(str(run[k]) for k in ("claimed", "completed", "failed", "errors")),
            result,
        )
        runs_table.add_row(*(cell(value) for value in cells))
    if figures["runs"]:
        console.print(runs_table)
    for reason in figures["attention"]:
        console.print(Text.assemble(("needs a person: ", "bold red"), shown(reason)))
    if not figures["attention"]:
        console.print(Text("nothing needs a person", style="green"))


def _age(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def events_table(rows: list[dict[str, Any]]) -> None:
    columns = ("event", "type", "order", "created", "webhook", "delivery", "attempts")
    table = _table("events", (*columns, "last error"))
    for row in rows:
        cells = (
            str(row["id"]),
            row["type"],
            str(row["order_id"]),
            when(row["created_at"]),
            row["webhook"] or "-",
            row["state"] or "-",
            str(row["attempts"] or 0),
            row["last_error"] or "",
        )
        table.add_row(*(cell(value) for value in cells))
    _console().print(table)
