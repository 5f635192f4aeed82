"""`ordermon report` against a hostile shop table and unlucky data: clocks that disagree,
NULL currencies, an order's "providerId" changed after its refund, a DST day."""

import datetime as dt
import json
from typing import Any

from ordermon import db
from ordermon.ops import report, report_charts, report_html
from tests.conftest import add_user, make_config
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
