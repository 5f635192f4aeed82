"""The charts of `ordermon report --html`, as plotly figure dicts (data, layout) built from
the figures of ops/report.py. Pure: no plotly import here (the page embeds plotly.js only).

Every text from the database or a provider (provider names above all) goes through ``label``
first: plotly.js reads a few HTML-like tags in every text it draws (<br>, <b>, <a href>...),
so such text is escaped as HTML entities, which plotly.js shows as the characters they are."""

import datetime as dt
import html
import itertools
import re
import zoneinfo
from typing import Any

from ordermon.ops import report

OUTCOME_COLOURS = {
    "completed": "#2ca02c",
    "refunded": "#ff7f0e",
    "rejected": "#d62728",
    "held": "#9467bd",
    "expired": "#7f7f7f",
}
# One colour per provider, the same on every chart (plotly's own ten, in its order).
PROVIDER_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
QUANTILE_COLOURS = {"p50": "#9ecae1", "p90": "#4292c6", "p99": "#08519c"}
CURRENCY_PATTERNS = ("", "/", ".", "x", "-", "+")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def label(value: object) -> str:
    """Outside text as a person may see it: control and bidi characters visibly escaped
    (``\\x1b``), then HTML-escaped (for the page and for plotly.js alike)."""
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    # Quotes as numeric references: plotly.js decodes those, not &quot; (shown as typed).
    return html.escape(text, quote=False).replace('"', "&#34;").replace("'", "&#39;")


def charts(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Every chart of the page: ``id``, ``title``, ``data``, ``layout``, in order. A provider
    has one colour on every chart (the percentiles, one series per quantile, use blues)."""
    providers = figures["providers"]
    colour = {
        p["name"]: PROVIDER_COLOURS[i % len(PROVIDER_COLOURS)] for i, p in enumerate(providers)
    }

    def paint(trace: dict[str, Any], name: str) -> dict[str, Any]:
        """``trace`` in the colour of provider ``name``: its bars, or its line and markers."""
        painted = trace | {"marker": {**trace.get("marker", {}), "color": colour[name]}}
        if trace["type"] == "scatter":
            painted["line"] = {**trace.get("line", {}), "color": colour[name]}
        return painted

    def buckets(p: dict[str, Any], key: str, edge: str) -> dict[str, Any]:
        """One provider's bars of bucketed counts (``key``: histogram or backlog)."""
        return paint(_bar(p["name"], [b[edge] for b in p[key]], _counts(p[key])), p["name"])

    tz = figures["timezone"]
    zone = label(tz)
    made = [
        _chart(
            "time-to-final",
            "Time from sentAt to final state (orders per bucket)",
            [buckets(p, "histogram", "bucket") for p in providers if p["finished"]],
            "time to final state",
            "orders",
            barmode="group",
        ),
        _chart(
            "percentiles",
            "Time to final state: p50, p90, p99 per provider (seconds)",
            [
                _bar(q, [label(p["name"]) for p in providers], _quantile(providers, q), raw=True)
                | {"marker": {"color": QUANTILE_COLOURS[q]}}
                for q in ("p50", "p90", "p99")
            ],
            "provider",
            "seconds",
            barmode="group",
        ),
    ]
    for i, p in enumerate(providers):
        days = [d["day"] for d in p["outcomes_per_day"]]
        made.append(
            _chart(
                f"outcomes-{i}",
                f"{label(p['name'])}: outcome mix per day",
                [
                    _bar(word, days, [d[word] for d in p["outcomes_per_day"]], raw=True)
                    | {"marker": {"color": OUTCOME_COLOURS.get(word)}}
                    for word in report.OUTCOMES
                ],
                f"day ({zone})",
                "orders",
                axis="day",
                barmode="stack",
                empty="no order finished in this period",
            )
        )
    # The hours' axis spans the whole period (a lone hour is not stretched to milliseconds).
    span = {"range": [_wall_clock(figures[k], tz) for k in ("since", "now")]}
    made += [
        _chart(
            "error-rate",
            "Error rate per hour (errors / checks)",
            [
                paint(_line(p["name"], *_hourly(p["hourly"], "error_rate", tz)), p["name"])
                for p in providers
            ],
            f"hour ({zone})",
            "error rate",
            empty="no check in this period",
            axis="date",
            xaxis=span,
            yaxis={"tickformat": ".0%"},
        ),
        _chart(
            "latency",
            "Provider latency per hour: p50 (solid) and p95 (dotted), ms",
            [
                paint(
                    _line(f"{p['name']} {q}", *_hourly(p["hourly"], f"latency_{q}_ms", tz))
                    | {"line": {"dash": "solid" if q == "p50" else "dot"}},
                    p["name"],
                )
                for p in providers
                for q in ("p50", "p95")
            ],
            f"hour ({zone})",
            "ms",
            empty="no check in this period",
            axis="date",
            xaxis=span,
        ),
    ]
    for key, title, y_title in (("count", "Refunds per day", "refunds"), ("amount", "", "amount")):
        made.append(
            _chart(
                f"refunds-{key}",
                title or "Refunded amount per day, per currency",
                [
                    # The provider's colour; a second currency of it hatched, a third dotted.
                    paint(
                        _bar(
                            f"{p['name']} {currency}",
                            [r["day"] for r in rows],
                            [float(r[key]) for r in rows],
                        )
                        | {"marker": {"pattern": {"shape": shape}}},
                        p["name"],
                    )
                    for p in providers
                    for (currency, rows), shape in zip(
                        _by_currency(p["refunds_per_day"]).items(),
                        itertools.cycle(CURRENCY_PATTERNS),
                        strict=False,
                    )
                ],
                f"day ({zone})",
                y_title,
                axis="day",
                barmode="group",
                empty="no refund in this period",
            )
        )
    made.append(
        _chart(
            "backlog",
            "Backlog now: orders still waiting, by time since sentAt",
            [buckets(p, "backlog", "age") for p in providers],
            "waiting for",
            "orders",
            barmode="group",
            empty="no order is waiting" if not any(p["waiting"] for p in providers) else None,
        )
    )
    return made


def _chart(
    chart_id: str,
    title: str,
    data: list[dict[str, Any]],
    x_title: str,
    y_title: str,
    *,
    barmode: str | None = None,
    empty: str | None = None,
    axis: str = "category",
    xaxis: dict[str, Any] | None = None,
    yaxis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``title`` and the axis titles are already escaped (they may hold a provider's name)."""
    layout: dict[str, Any] = {
        # The page's heading names the chart: no title inside it.
        "xaxis": {"title": {"text": x_title}, "automargin": True, **_AXES[axis], **(xaxis or {})},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero", **(yaxis or {})},
        "height": 380,
        "margin": {"l": 70, "r": 30, "t": 20, "b": 60},
        "legend": {"orientation": "h", "y": -0.25},
    }
    if barmode:
        layout["barmode"] = barmode
    drawn = any(any(v is not None and v != 0 for v in trace["y"]) for trace in data)
    if empty and not drawn:
        layout["annotations"] = [
            {
                "text": empty,
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
            }
        ]
    return {"id": chart_id, "title": title, "data": data, "layout": layout}


# "day": ISO dates as categories (one bar a day, however few), in date order.
_AXES: dict[str, dict[str, str]] = {
    "category": {"type": "category"},
    "day": {"type": "category", "categoryorder": "category ascending"},
    "date": {"type": "date"},
}


def _bar(name: str, x: list[Any], y: list[Any], raw: bool = False) -> dict[str, Any]:
    """A bar trace; ``raw``: ``name`` is ordermon's own word (not outside text)."""
    return {"type": "bar", "name": name if raw else label(name), "x": x, "y": y}


def _line(name: str, x: list[Any], y: list[Any]) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": label(name),
        "x": x,
        "y": y,
        "connectgaps": False,
    }


def _counts(buckets: list[dict[str, Any]]) -> list[int]:
    return [b["count"] for b in buckets]


def _quantile(providers: list[dict[str, Any]], q: str) -> list[float | None]:
    return [p["time_to_final_s"][q] for p in providers]


def _hourly(hours: list[dict[str, Any]], key: str, zone: str) -> tuple[list[str], list[Any]]:
    """Every hour from the first to the last, None where there was no check (a gap in the
    line, not a line drawn across it). Hours as wall-clock times of the configured zone:
    plotly.js ignores offsets, and the axis says which zone."""
    by_hour = {dt.datetime.fromisoformat(h["hour"]): h[key] for h in hours}
    if not by_hour:
        return [], []
    first, last = min(by_hour), max(by_hour)
    steps = int((last - first).total_seconds()) // 3600 + 1
    # Steps of real hours: a day that changes its offset keeps every hour exactly once.
    moments = [first + dt.timedelta(hours=i) for i in range(steps)]
    shown = [_wall_clock(m.isoformat(), zone) for m in moments]
    return shown, [by_hour.get(m) for m in moments]


def _wall_clock(moment: str, zone: str) -> str:
    local = dt.datetime.fromisoformat(moment).astimezone(zoneinfo.ZoneInfo(zone))
    return local.replace(tzinfo=None).isoformat()


def _by_currency(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        found.setdefault(r["currency"], []).append(r)
    return found
