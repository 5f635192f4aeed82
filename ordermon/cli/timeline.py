"""What `ordermon show` prints: the order's columns, each dispatch with how its checks
counted toward the schedule, and every attempt marked the same way."""

from typing import Any

from ordermon.cli import render, tables
from ordermon.config import human

# The order's columns that are times (ISO-8601 in the configured zone, shown by `when`).
_TIMES = ("sent_at", "last_sync_at", "completed_at")
_ORDER_KEYS = (
    *("order_no", "status", "external_status", "provider", "provider_referans"),
    *("external_order_id", "sent_at", "last_sync_at", "completed_at", "last_message"),
    *("pin_stored", "amount", "currency"),
)
_MARKS = {
    "counted": "yes",
    "provider trouble": "no: provider trouble",
    "taken over": "no: taken over",
    "unknown": "not known",
    "not recorded": "no: not recorded",
}


def _column(key: str, value: Any) -> str:
    """A column as a person reads it: a time in the configured zone, "-" for NULL, yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return render.when(value) if key in _TIMES else str(value)


def order_view(picture: dict[str, Any]) -> None:
    from rich.text import Text

    console = tables.console()
    order = picture["order"]
    title = render.cell(f"order {order['id']}")
    summary = tables.table(title, ("", ""), show_header=False, box=None)
    for key in _ORDER_KEYS:
        value = order.get(key)
        shown = _column(key, value)
        summary.add_row(key.replace("_", " "), render.cell(shown))
    if picture["refund"]:
        refund = picture["refund"]
        summary.add_row(
            "refunded", render.cell(f"{refund['amount']} at {render.when(refund['refunded_at'])}")
        )
    console.print(summary)
    for enrolment in picture["enrolments"]:
        console.print(
            Text.assemble(
                render.shown(
                    f"dispatch {enrolment['reference']} sent {render.when(enrolment['sent_at'])}: "
                ),
                (render.shown(enrolment["state"]), "bold"),
                render.shown(dispatch_line(enrolment)),
            )
        )
    columns = ("time", "provider", "ms", "HTTP", "outcome", "applied", "counted")
    timeline = tables.table(render.cell("attempts"), (*columns, "message", "reply"))
    for attempt in picture["attempts"]:
        cells = (
            render.when(attempt["checked_at"]),
            attempt["provider"],
            "-" if attempt["latency_ms"] is None else str(attempt["latency_ms"]),
            str(attempt["http_status"] or "-"),
            attempt["outcome"],
            attempt["applied"] or "",
            _MARKS[attempt["counts"]],
            attempt["message"] or "",
            attempt["excerpt"] or "",
        )
        timeline.add_row(*(render.cell(value) for value in cells))
    console.print(timeline)


def dispatch_line(enrolment: dict[str, Any]) -> str:
    """After the state: ``, 2 checks: 1 counted, 1 provider trouble (HTTP 500); next check
    ..., deadline ...``; a finished dispatch says when it finished instead."""
    line = ", " + checks(enrolment)
    if enrolment["state"] == "waiting":
        line += f"; next check {render.when(enrolment['next_check_at'])}"
        if enrolment.get("next_check_why"):
            line += f" ({enrolment['next_check_why']})"
        line += f", deadline {render.when(enrolment['deadline'])}"
        if enrolment["claimed_until"]:
            line += f", claimed until {render.when(enrolment['claimed_until'])}"
    elif enrolment["finished_at"]:
        line += f"; finished {render.when(enrolment['finished_at'])}"
    return line


def checks(enrolment: dict[str, Any]) -> str:
    """The dispatch's checks by how they weighed on its schedule, in the rows' own words,
    and the schedule's count where it differs from the rows kept."""
    total, counted = enrolment["checks"], enrolment["counted"]
    if not total:
        text = "no checks yet"
    else:
        parts = [f"{counted} counted"]
        if enrolment["provider_trouble"]:
            labels = ", ".join(
                label if n == 1 and len(enrolment["troubles"]) == 1 else f"{n} {label}"
                for label, n in enrolment["troubles"].items()
            )
            parts.append(f"{enrolment['provider_trouble']} provider trouble ({labels})")
        if enrolment["taken_over"]:
            parts.append(f"{enrolment['taken_over']} taken over by another sweep")
        if enrolment["not_recorded"]:
            parts.append(f"{enrolment['not_recorded']} that ordermon could not record")
        if enrolment["unknown"]:
            parts.append(f"{enrolment['unknown']} not known (recorded before ordermon kept it)")
        text = f"{human.plural(total, 'check')}: " + ", ".join(parts)
    schedule = enrolment["attempts"]
    if schedule != counted and not enrolment["unknown"]:
        why = "since a requeue" if schedule < counted else "older checks are no longer kept"
        text += f" (the schedule counts {human.plural(schedule, 'attempt')}: {why})"
    elif enrolment["unknown"]:
        text += f" (the schedule counts {human.plural(schedule, 'attempt')})"
    return text
