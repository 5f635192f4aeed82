"""`ordermon report --html PATH`: the figures of ops/report.py as one self-contained HTML page
(charts drawn by plotly.js, embedded inline: the page works opened from disk with no network),
and its atomic write, so that cron can refresh it into a static web root.

``page`` is pure (figures and plotly.js's source in, the page out). Outside text reaches the
page only HTML-escaped (report_charts.label); the charts' data travels as JSON in a
``<script type="application/json">`` block with every ``<``, ``>`` and ``&`` written as a
JSON escape, so no text can close that block or be read as markup."""

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ordermon import errors
from ordermon.config import human
from ordermon.ops.report_charts import charts, label

INSTALL_HINT = "pip install 'ordermon[report]'"
# Nothing but what the page holds: no request may leave it, whatever its text.
_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em; }
.period { color: #555; } .empty { font-size: 1.1em; padding: 1em; background: #f4f4f4; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.95em; } .chart { min-height: 380px; }
"""
_DRAW = """
(function () {
  var charts = JSON.parse(document.getElementById("ordermon-charts").textContent);
  var options = {displaylogo: false, responsive: true};
  charts.forEach(function (c) { Plotly.newPlot(c.id, c.data, c.layout, options); });
})();
"""
_ORDER_COLUMNS = ("order id", "number", "provider", "seconds", "checks", "outcome", "finished")


def plotly_js() -> str:
    """plotly.js's source from the ``plotly`` package (the ``report`` extra)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise errors.UsageError(
            f"--html needs plotly, which is not installed: {INSTALL_HINT}"
        ) from None
    return str(get_plotlyjs())


def page(figures: dict[str, Any], plotly: str) -> str:
    """The whole page; ``plotly`` is plotly.js's source (``plotly_js()``)."""
    since, now = (label(human.moment(figures[k])) for k in ("since", "now"))
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>ordermon report to {now}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>ordermon report</h1>\n"
        f'<p class="period">from {since} to {now} (timezone {label(figures["timezone"])})</p>\n'
    )
    if figures["empty"]:
        return head + (
            '<p class="empty" id="empty">nothing yet: no order finished, waits or was checked '
            "in this period</p>\n</body>\n</html>\n"
        )
    made = charts(figures)
    body = [_summary(figures["providers"])]
    for chart in made:
        body.append(f'<h2>{chart["title"]}</h2>\n<div class="chart" id="{chart["id"]}"></div>\n')
    for key, title in (("slowest", "Slowest orders"), ("most_checked", "Most-checked orders")):
        body.append(_orders(key, title, figures[key]))
    data = [{k: c[k] for k in ("id", "data", "layout")} for c in made]
    return (
        head
        + "".join(body)
        + '<p class="period">Any order: <code>ordermon show ORDER_ID</code>.</p>\n'
        + f"<script>{_inline(plotly)}</script>\n"
        + f'<script type="application/json" id="ordermon-charts">{_json(data)}</script>\n'
        + f"<script>{_DRAW}</script>\n</body>\n</html>\n"
    )


def write(path: Path, text: str, option: str = "--html") -> None:
    """Replace ``path`` atomically (a reader sees the old page or the new one, never half of
    one), readable by all (0644, for a web server). Its directory is never created here; a
    path that cannot be written is a usage error and leaves what was there as it was."""
    where = check_target(path, option)
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:
        raise errors.UsageError(f"{where}: cannot write there ({exc.strerror})") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise errors.UsageError(f"{where}: cannot write there ({exc.strerror})") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_target(path: Path, option: str = "--html") -> str:
    """A usage error unless ``path`` names a file in a directory that exists (told before
    any work); the option and path, for messages."""
    where = f"{option} {str(path)[:300]}"
    if path.is_dir():
        raise errors.UsageError(f"{where}: is a directory; give a file name")
    if (path.exists() or path.is_symlink()) and not path.is_file():
        # The rename would replace whatever is there: a pipe, a device (/dev/null, as root).
        raise errors.UsageError(f"{where}: exists and is not a regular file; give a file name")
    if not path.parent.is_dir():
        raise errors.UsageError(f"{where}: no directory {str(path.parent)[:300]}; create it")
    return where


def _inline(script: str) -> str:
    r"""A script safe inside <script>: one that ever spelled "</script" would end it early
    (plotly.js does not today; ``<\/`` means the same in every JS string and regex)."""
    return re.sub(r"</(?=script)", r"<\\/", script, flags=re.IGNORECASE)


def _json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text


def _summary(providers: list[dict[str, Any]]) -> str:
    columns = ("provider", "finished", "p50 s", "p90 s", "p99 s", "checks mean", "checks p90")
    rows = []
    for p in providers:
        t, c = p["time_to_final_s"], p["checks_per_order"]
        values = (p["finished"], t["p50"], t["p90"], t["p99"], c["mean"], c["p90"], p["waiting"])
        rows.append([label(p["name"]), *(_number(v) for v in values)])
    return _table("Per provider", "summary", (*columns, "waiting now"), rows)


def _orders(key: str, title: str, orders: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"<code>{label(o['order_id'])}</code>",
            label("" if o["order_no"] is None else o["order_no"]),  # gone from the shop
            label(o["provider"]),
            _number(o["time_to_final_s"]),
            _number(o["checks"]),
            label(o["outcome"]),
            label(human.moment(o["finished_at"])),
        ]
        for o in orders
    ]
    return _table(title, key.replace("_", "-"), _ORDER_COLUMNS, rows)


def _table(title: str, table_id: str, columns: tuple[str, ...], rows: list[list[str]]) -> str:
    """``rows``: cells already escaped (numbers marked ``\\0`` to align right)."""
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell[1:]}</td>' if cell.startswith("\0") else f"<td>{cell}</td>"
            for cell in row
        )
        + "</tr>\n"
        for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(columns)}">none in this period</td></tr>\n'
    return f'<h2>{title}</h2>\n<table id="{table_id}">\n<tr>{head}</tr>\n{body}</table>\n'


def _number(value: Any) -> str:
    return "\0" + ("-" if value is None else label(value))
