"""`ordermon report`: the figures of ops/report.py as tables. On a terminal, with compact
charts (unicode block sparklines and bars); off one, plain complete text: every figure,
hour by hour, without charts or boxes."""

from pathlib import Path
from typing import Annotated, Any

import typer

from ordermon import errors
from ordermon.cli import support, tables

app = typer.Typer()

SPARKS = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉█"


def sparkline(values: list[float | None]) -> str:
    """One block character per value, scaled from 0 to the largest; a blank for None."""
    top = max((v for v in values if v is not None), default=0)
    if top <= 0:
        return "".join(" " if v is None else SPARKS[0] for v in values)
    return "".join(
        " " if v is None else SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))]
        for v in values
    )


def hourly_series(hours: list[dict[str, Any]], key: str, missing: float | None) -> list[Any]:
    """``key`` of every hour from the first to the last, ``missing`` for an hour without
    checks (absent from the figures), so that a sparkline's gaps are where time passed."""
    import datetime as dt

    by_hour = {dt.datetime.fromisoformat(h["hour"]).timestamp(): h[key] for h in hours}
    if not by_hour:
        return []
    first, last = min(by_hour), max(by_hour)
    return [by_hour.get(first + 3600 * i, missing) for i in range(int(last - first) // 3600 + 1)]


def bar(value: float, top: float, width: int = 20) -> str:
    """A horizontal bar of ``value`` out of ``top`` in ``width`` cells, to an eighth."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")


@app.command()
def report(
    config_path: support.ConfigOption = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="The period: the last DURATION (default 7d, at most 366d)."),
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", help="Only this provider (by name); repeatable."),
    ] = None,
    as_json: support.JsonOption = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write the report as one self-contained HTML page with charts to PATH "
            "(replaced atomically; needs the report extra: pip install 'ordermon[report]').",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
) -> None:
    """How the providers performed: time to final state, outcomes, checks, errors, refunds."""
    from ordermon.cli import render
    from ordermon.ops import report as reports
    from ordermon.ops import report_html
    from ordermon.sweep import sweep

    names = tuple(provider or ())
    with support.expected_failures():
        period = reports.period(since)
        if html is not None and as_json:
            raise errors.UsageError("--html and --json: give one of them")
        # Before the database: a missing extra is told at once.
        plotly = report_html.plotly_js() if html is not None else ""
        if html is not None:
            report_html.check_target(html)

    def work(cfg: Any, conn: Any) -> dict[str, Any]:
        support.known_providers(cfg, names)
        return reports.gather(conn, cfg, sweep.utc_now(), period, names)

    figures = support.with_database(config_path, work)
    if html is not None:
        with support.expected_failures():
            report_html.write(html, report_html.page(figures, plotly))
        # The path written, for a person; cron's line sends stdout to /dev/null.
        print(html)
    elif as_json:
        render.print_json(figures)
    else:
        view(figures)


def view(figures: dict[str, Any]) -> None:
    from ordermon.cli import render
    from ordermon.config import human

    console = tables.console()
    console.print(
        f"ordermon report from {human.moment(figures['since'])} to {human.moment(figures['now'])}"
    )
    if figures["empty"]:
        console.print("nothing yet: no order finished, waits or was checked in this period")
        return
    charts = tables.boxed()
    cell = render.cell
    summary = tables.table(
        _title("time from sentAt to final state"),
        ("provider", "finished", "p50", "p90", "p99", "checks mean", "checks p90", "waiting"),
    )
    for p in figures["providers"]:
        t, c = p["time_to_final_s"], p["checks_per_order"]
        summary.add_row(
            *(cell(v) for v in (p["name"], p["finished"], *_secs(t), c["mean"], c["p90"])),
            cell(p["waiting"]),
        )
    console.print(summary)
    for p in figures["providers"]:
        _provider(console, p, charts)
    for key, title in (("slowest", "slowest orders"), ("most_checked", "most-checked orders")):
        listed = tables.table(
            _title(title),
            ("order id", "number", "provider", "seconds", "checks", "outcome", "finished"),
        )
        for o in figures[key]:
            listed.add_row(
                *(
                    cell(v)
                    for v in (
                        o["order_id"],
                        o["order_no"],
                        o["provider"],
                        o["time_to_final_s"],
                        o["checks"],
                        o["outcome"],
                        human.moment(o["finished_at"]),
                    )
                )
            )
        if figures[key]:
            console.print(listed)


def _provider(console: Any, p: dict[str, Any], charts: bool) -> None:
    from ordermon.cli import render
    from ordermon.config import human
    from ordermon.ops import report as reports

    cell, name = render.cell, render.shown(p["name"])
    for key, title, label in (
        ("histogram", "time to final state", "bucket"),
        ("backlog", "backlog now by age", "age"),
    ):
        top = max((b["count"] for b in p[key]), default=0)
        hist = tables.table(
            _title(f"{name}: {title}"), (label, "orders", *(("",) if charts else ()))
        )
        for b in p[key]:
            extra = (cell(bar(b["count"], top)),) if charts else ()
            hist.add_row(cell(b[label]), cell(b["count"]), *extra)
        console.print(hist)
    days = tables.table(_title(f"{name}: outcomes per day"), ("day", *reports.OUTCOMES))
    for d in p["outcomes_per_day"]:
        days.add_row(cell(d["day"]), *(cell(d[k]) for k in reports.OUTCOMES))
    if p["outcomes_per_day"]:
        console.print(days)
    refunds = tables.table(
        _title(f"{name}: refunds per day"), ("day", "currency", "count", "amount")
    )
    for r in p["refunds_per_day"]:
        refunds.add_row(*(cell(r[k]) for k in ("day", "currency", "count", "amount")))
    for r in p["refund_totals"]:
        refunds.add_row(cell("total"), *(cell(r[k]) for k in ("currency", "count", "amount")))
    if p["refunds_per_day"]:
        console.print(refunds)
    hours = p["hourly"]
    if not hours:
        return
    if charts:
        spark = tables.table(_title(f"{name}: per hour"), ("figure", "from", "chart", "max"))
        for key, label in (
            ("checks", "checks"),
            ("error_rate", "error rate"),
            ("latency_p50_ms", "latency p50 ms"),
            ("latency_p95_ms", "latency p95 ms"),
        ):
            values = hourly_series(hours, key, 0 if key == "checks" else None)
            top = max((v for v in values if v is not None), default=None)
            spark.add_row(
                cell(label),
                cell(human.moment(hours[0]["hour"])),
                cell(sparkline(values)),
                cell(top),
            )
        console.print(spark)
        return
    hourly = tables.table(
        _title(f"{name}: per hour"), ("hour", "checks", "errors", "error rate", "p50 ms", "p95 ms")
    )
    for h in hours:
        hourly.add_row(
            cell(human.moment(h["hour"])),
            *(
                cell(h[k])
                for k in ("checks", "errors", "error_rate", "latency_p50_ms", "latency_p95_ms")
            ),
        )
    console.print(hourly)


def _title(text: str) -> Any:
    """Off a terminal, a title kept on one line however narrow its table (plain text is
    never wrapped)."""
    from rich.text import Text

    if tables.on_terminal():
        return Text(text)
    return Text(text, no_wrap=True, overflow="ignore")


def _secs(t: dict[str, Any]) -> tuple[Any, ...]:
    return tuple("-" if t[k] is None else t[k] for k in ("p50", "p90", "p99"))
