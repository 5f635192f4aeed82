"""`ordermon report` against a hostile shop table and unlucky data: clocks that disagree,
NULL currencies, an order's "providerId" changed after its refund, a DST day."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ordermon import db
from ordermon.cli import report as cli_report
from ordermon.ops import report, report_charts, report_html, report_sql
from tests.conftest import PROVIDER_ID, add_user, make_config
from tests.test_report import NOW, finished, t


def _gather(conn: db.Connection, **overrides: Any) -> dict[str, Any]:
    cfg = make_config("postgresql://unused", "http://unused", **overrides)
    return report.gather(conn, cfg, NOW, dt.timedelta(days=7))


def test_a_final_state_before_sent_at_is_counted_once_in_the_first_bucket(
    conn: db.Connection,
) -> None:
    """The shop's clock ahead of ordermon's: "sentAt" after the final state, a negative
    time. It is counted (in 0s-10s), and the 1h+ orders keep their own count."""
    user = add_user(conn)
    finished(conn, user, t(2, 10), 4000, 1, "completed", number=1)
    finished(conn, user, t(2, 11), 5000, 1, "completed", number=2)
    finished(conn, user, t(2, 12), -30, 1, "completed", number=3)
    [p] = _gather(conn)["providers"]
    counts = [b["count"] for b in p["histogram"]]
    assert sum(counts) == p["finished"] == 3
    assert counts[0] == 1 and counts[-1] == 2


def test_a_null_currency_beside_another_is_reported(conn: db.Connection) -> None:
    """The shop's "sellPriceCurrency" NULL on one refunded order (its table, its rules): the
    report, its page and its JSON still come out, the NULL named as such."""
    conn.execute('ALTER TABLE product_orders ALTER COLUMN "sellPriceCurrency" DROP NOT NULL')
    user = add_user(conn)
    finished(conn, user, t(2, 10), 20, 1, "refunded", number=1, refund=("5.00", "EUR"))
    order = finished(conn, user, t(2, 11), 30, 1, "refunded", number=2, refund=("2.00", "USD"))
    conn.execute(
        'UPDATE product_orders SET "sellPriceCurrency" = NULL WHERE id = %(id)s', {"id": order}
    )
    figures = _gather(conn)
    [p] = figures["providers"]
    assert [(r["currency"], r["amount"]) for r in p["refund_totals"]] == [
        (report.NO_CURRENCY, "2.00"),
        ("EUR", "5.00"),
    ]
    names = [t["name"] for c in report_charts.charts(figures) for t in c["data"]]
    assert f"alaya {report_charts.label(report.NO_CURRENCY)}" in names
    assert report_html.page(figures, "").endswith("</html>\n")
    json.dumps(figures)


def test_a_refund_stays_with_the_provider_that_had_the_order(conn: db.Connection) -> None:
    """The shop re-sends (or clears) an order's "providerId" after ordermon refunded it: the
    refund is still the figure of the provider ordermon watched it with, not of a phantom."""
    user = add_user(conn)
    order = finished(conn, user, t(2, 10), 20, 1, "refunded", number=1, refund=("5.00", "EUR"))
    other = finished(conn, user, t(2, 11), 20, 1, "refunded", number=2, refund=("1.00", "EUR"))
    conn.execute('UPDATE product_orders SET "providerId" = NULL WHERE id = %(id)s', {"id": order})
    conn.execute(
        """UPDATE product_orders SET "providerId" = '(no "providerId")' WHERE id = %(id)s""",
        {"id": other},
    )
    figures = _gather(conn)
    [p] = figures["providers"]
    assert p["provider_id"] == PROVIDER_ID
    assert p["refund_totals"] == [{"currency": "EUR", "count": 2, "amount": "6.00"}]
    # A refund with no enrolment recorded falls back to the order's "providerId": NULL on
    # one, "" on another, both named alike, still sorted without a TypeError.
    conn.execute("UPDATE ordermon_refunds SET enrolment_id = NULL")
    conn.execute(
        """UPDATE product_orders SET "providerId" = \'\' WHERE id = %(id)s""", {"id": other}
    )
    names = [p["name"] for p in _gather(conn)["providers"]]
    assert names == ['(no "providerId")', '(no "providerId")', "alaya"]


def test_the_hour_a_dst_day_repeats_is_two_hours(conn: db.Connection) -> None:
    """America/New_York on 2026-11-01: 01:00-02:00 happens twice (EDT, then EST). Each real
    hour is its own row; none is merged into the other."""
    user = add_user(conn)
    edt = dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC)  # 01:30 EDT
    est = dt.datetime(2026, 11, 1, 6, 30, tzinfo=dt.UTC)  # 01:30 EST
    finished(conn, user, edt, 0, 1, "completed", number=1)
    finished(conn, user, est, 0, 2, "completed", number=2)
    cfg = make_config("postgresql://unused", "http://unused", timezone="America/New_York")
    figures = report.gather(conn, cfg, dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    [p] = figures["providers"]
    assert [(h["hour"], h["checks"]) for h in p["hourly"]] == [
        ("2026-11-01T01:00:00-04:00", 1),
        ("2026-11-01T01:00:00-05:00", 2),
    ]
    assert cli_report.hourly_series(p["hourly"], "checks", 0) == [1, 2]


def test_shop_provider_ids_cannot_shadow_or_flood_the_provider_gauges(
    conn: db.Connection,
) -> None:
    """The shop's table names a "providerId" that is a configured provider's name, and 300
    other unknown ids. The per-provider gauges stay one series per configured provider (the
    expired order of alaya is not shadowed by a second provider="alaya" series at 0, which
    the collector would keep or drop at random); unknown ids are only in
    ordermon_orders_unwatched, capped as it is."""
    from prometheus_client.parser import text_string_to_metric_families

    from ordermon.ops import metrics, status
    from tests.conftest import add_order

    user = add_user(conn)
    order = add_order(conn, user, "ref-x", provider_id=PROVIDER_ID)
    conn.execute(
        "INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,"
        " next_check_at, deadline) SELECT id, %(p)s, 'ref-x', \"sentAt\", 'expired', now(),"
        " now()"
        " FROM product_orders WHERE id = %(o)s",
        {"o": order, "p": PROVIDER_ID},
    )
    for i, provider_id in enumerate(["alaya", *(f"unknown-{i}" for i in range(300))]):
        add_order(conn, user, f"u-{i}", provider_id=provider_id)
    cfg = make_config("postgresql://unused", "http://unused")
    figures = status.gather(conn, cfg, dt.datetime.now(dt.UTC))
    text = metrics.render(figures, [], 1.0, None)
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    for name in ("waiting", "expired", "held"):
        samples = [s.labels["provider"] for s in families[f"ordermon_orders_{name}"]]
        assert samples == ["alaya"], (name, samples[:5])
    assert [s.labels["provider"] for s in families["ordermon_provider_paused"]] == ["alaya"]
    assert [s.value for s in families["ordermon_orders_expired"]] == [1.0]
    assert len(families["ordermon_orders_unwatched"]) == 1 + metrics.UNWATCHED_IDS + 1


def test_html_never_replaces_what_is_not_a_regular_file(tmp_path: Path, db_url: str) -> None:
    """--html at a named pipe, at a link to a device (as root, `--html /dev/null` replaced
    /dev/null with the page: this test uses a link so that it could never do that) or at a
    dangling link: exit 2 before any work, the pipe and the links left as they were."""
    import os

    from tests.conftest import run_cli, write_config

    config_path = write_config(tmp_path / "c.yaml", db_url, "http://unused")
    pipe = tmp_path / "fifo.html"
    os.mkfifo(pipe)
    device = tmp_path / "device.html"
    device.symlink_to("/dev/null")
    dangling = tmp_path / "dangling.html"
    dangling.symlink_to(tmp_path / "nowhere" / "report.html")
    for target in (pipe, device, dangling):
        done = run_cli("report", "--config", str(config_path), "--html", str(target))
        assert done.returncode == 2, (target, done.stdout, done.stderr)
        assert "exists and is not a regular file" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert pipe.is_fifo() and device.is_symlink() and dangling.is_symlink()
    assert Path("/dev/null").is_char_device()
    assert not list(tmp_path.glob(".*.tmp"))


PLOTLY_MARKUP = (
    '<a href="javascript:alert(1)">click</a>',
    "<b>bold</b><br>line<sub>2</sub>",
    "$\\alert{1}$",
    "\u202eevil\u2066",
    "&lt;b&gt;",
)


def test_text_plotly_would_read_as_markup_is_shown_as_text(
    tmp_path: Path, db_url: str, conn: db.Connection
) -> None:
    """Provider ids and currencies with the tags plotly.js interprets in every text it draws
    (<a href>, <b>, <br>, <sub>), TeX between dollars, bidi overrides and entities: in headless
    Chromium offline, no console message, no link or bold made of them, the legends showing
    the characters as they were (bidi controls escaped visibly)."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import write_config
    from tests.test_report_html import CHARTS_DRAWN, Browser, _chromium

    executable = _chromium()
    user = add_user(conn)
    now = dt.datetime.now(dt.UTC)
    for i, provider_id in enumerate(PLOTLY_MARKUP):
        currency = ("<br>", "$x$", "<b>B</b>", "\u202e", "&amp;")[i]
        finished(
            conn,
            user,
            now - dt.timedelta(hours=3 + i),
            30 * (i + 1),
            2,
            "refunded",
            number=i + 1,
            provider_id=provider_id,
            refund=("1.00", currency),
            errors_first=1,
        )
    # And odd figures: no latency at all for one provider, a final state before "sentAt",
    # an order waiting with a "sentAt" in the future.
    conn.execute(
        "UPDATE ordermon_attempts SET latency_ms = NULL WHERE provider_id = %(p)s",
        {"p": PLOTLY_MARKUP[1]},
    )
    finished(conn, user, now - dt.timedelta(hours=1), -40, 1, "completed", number=50)
    from tests.test_report import waiting

    waiting(conn, user, now + dt.timedelta(days=400), 51)
    target = tmp_path / "report.html"
    config_path = write_config(tmp_path / "c.yaml", db_url, "http://unused")
    from tests.conftest import run_cli

    done = run_cli("report", "--config", str(config_path), "--html", str(target))
    assert done.returncode == 0, done.stderr
    with sync_playwright() as playwright:
        browser = Browser(playwright, executable)
        try:
            page = browser.page
            browser.open(target)
            drawn = page.evaluate(CHARTS_DRAWN)
            # The drag layer above the bars takes the mouse; plotly finds the bar under it.
            first = page.locator("#percentiles .trace .point path").first
            first.scroll_into_view_if_needed()
            bar = first.bounding_box()
            assert bar is not None
            page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2 + 1)
            page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)
            page.wait_for_timeout(500)
            made = page.evaluate(
                """() => ({
                  links: document.querySelectorAll('svg a, a[href^="javascript"]').length,
                  bold: document.querySelectorAll('svg [style*="bold"]').length,
                  hover: document.querySelector('#percentiles .hoverlayer')?.textContent || '',
                  ticks: Array.from(document.querySelectorAll('#percentiles .xtick text'))
                    .map((t) => t.textContent),
                })"""
            )
        finally:
            browser.close()
    assert browser.problems == [] and browser.left == []
    assert made["links"] == 0 and made["bold"] == 0, made
    legends = {t for chart in drawn for t in chart["legend"]}
    for provider_id in PLOTLY_MARKUP[:3]:
        assert provider_id in legends, (provider_id, sorted(legends), made)
        assert provider_id in made["ticks"], made["ticks"]
    assert "\\x202eevil\\x2066" in legends and "&lt;b&gt;" in legends
    assert f"{PLOTLY_MARKUP[0]} <br>" in legends  # the refunds' legend: id and currency
    assert any(p in made["hover"] for p in PLOTLY_MARKUP[:3]), made  # a bar's hover label


class _SweepBetweenQueries:
    """A connection through which `gather` reads, that lets a "sweep" finish one more order
    (committed on its own connection) right after the report's first query."""

    def __init__(self, conn: db.Connection, db_url: str) -> None:
        self._conn, self._db_url, self.queries = conn, db_url, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, query: Any, params: Any = None) -> Any:
        result = self._conn.execute(query, params)
        if query in (report_sql.SNAPSHOT, *report_sql.SETTINGS):
            return result
        self.queries += 1
        if self.queries == 1:  # right after the report's first query
            with db.connect(self._db_url, autocommit=True) as sweep:
                finished(
                    sweep,
                    add_user(sweep),
                    NOW - dt.timedelta(hours=1),
                    7,
                    1,
                    "completed",
                    number=99,
                )
        return result


def test_every_figure_comes_from_one_snapshot(conn: db.Connection, db_url: str) -> None:
    """A sweep commits while the report reads (as it does every minute): the figures still
    agree with each other (the histogram and the outcomes count what the count counts)."""
    user = add_user(conn)
    finished(conn, user, t(2, 10), 20, 1, "completed", number=1)
    cfg = make_config("postgresql://unused", "http://unused")
    reading = _SweepBetweenQueries(db.connect(db_url), db_url)
    try:
        figures = report.gather(reading, cfg, NOW)  # type: ignore[arg-type]
    finally:
        reading._conn.close()
    [p] = figures["providers"]
    assert sum(b["count"] for b in p["histogram"]) == p["finished"]
    assert sum(d["completed"] for d in p["outcomes_per_day"]) == p["finished"]
    # The finished orders' figures are one query (report_sql.FINISHED); the hourly checks
    # are another: they count the checks the finished orders' figures count.
    assert sum(h["checks"] for h in p["hourly"]) == p["finished"] * p["checks_per_order"]["mean"]
    assert reading.queries >= 4


def test_an_order_gone_from_the_shop_table_has_no_number_not_none(conn: db.Connection) -> None:
    """The shop deleted (or archived) a finished order, or never gave it an "orderNo": the
    page's lists show an empty number, not Python's "None"."""
    user = add_user(conn)
    gone = finished(conn, user, t(2, 10), 20, 1, "completed", number=1)
    finished(conn, user, t(2, 11), 30, 1, "completed", number=2)
    conn.execute("DELETE FROM product_orders WHERE id = %(id)s", {"id": gone})
    conn.execute('UPDATE product_orders SET "orderNo" = NULL')
    page = report_html.page(_gather(conn), "")
    slowest = page[page.index('<table id="slowest">') :]
    assert "None" not in slowest[: slowest.index("</table>")]
