"""`ordermon report` against a hostile shop table and unlucky data: clocks that disagree,
NULL currencies, an order's "providerId" changed after its refund, a DST day."""

import datetime as dt
import json
from typing import Any

from ordermon import db
from ordermon.cli import report as cli_report
from ordermon.ops import report, report_charts, report_html
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
