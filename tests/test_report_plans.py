"""`ordermon report` on a long history: each query reaches ordermon's tables through the
indexes of sql/009_report_indexes.sql (not by reading every row ever written), and the checks
counted in one pass are exactly the per-enrolment counts (the timing: benchmarks/, scenario 8)."""

import datetime as dt
from typing import Any

import pytest

from ordermon import db
from ordermon.ops import report, report_sql
from tests.conftest import PROVIDER_ID, add_order, add_user, make_config
from tests.test_report import NOW, finished, history, t

# The tables each query bounds by its period (or, for the backlog, by state). The refund of
# each finished enrolment is looked up by its order: the planner may hash the whole refunds
# table for that join when it is cheaper than a look-up per order, which it is free to do.
BOUNDED = {
    "HOURLY": ("ordermon_attempts",),
    "REFUNDS": ("ordermon_refunds",),
    "BACKLOG": ("ordermon_enrolments",),
}
FINISHED_BOUNDED = ("ordermon_enrolments", "ordermon_attempts")
# What each query must use on a history mostly older than the period.
EXPECTED = {
    "TIME_TO_FINAL": {"ordermon_enrolments_finished", "ordermon_attempts_enrolment"},
    "HISTOGRAM": {"ordermon_enrolments_finished"},
    "OUTCOMES": {"ordermon_enrolments_finished"},
    "SLOWEST": {"ordermon_enrolments_finished", "ordermon_attempts_enrolment"},
    "MOST_CHECKED": {"ordermon_enrolments_finished", "ordermon_attempts_enrolment"},
    "HOURLY": {"ordermon_attempts_checked_at"},
    "REFUNDS": {"ordermon_refunds_refunded_at"},
    "BACKLOG": {"ordermon_enrolments_due"},
}


def _params(providers: list[str] | None) -> dict[str, Any]:
    return {
        "since": NOW - dt.timedelta(days=7),
        "now": NOW,
        "tz": "UTC",
        "providers": providers,
        "edges": list(report.TIME_EDGES),
        "limit": report.LIST_LENGTH,
    }


@pytest.mark.parametrize("providers", [None, [PROVIDER_ID]])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_query_reads_its_period_through_indexes(
    conn: db.Connection, name: str, providers: list[str] | None
) -> None:
    history(conn)
    _older(conn, 20_000)
    with conn.transaction():
        for setting in report_sql.SETTINGS:
            conn.execute(setting)
        rows = conn.execute(
            ("EXPLAIN " + getattr(report_sql, name)).encode(), _params(providers)
        ).fetchall()
    plan = "\n".join(row["QUERY PLAN"] for row in rows)
    for index in EXPECTED[name]:
        assert index in plan, plan
    for table in BOUNDED.get(name, FINISHED_BOUNDED):
        assert f"Seq Scan on {table}" not in plan, plan


def _older(conn: db.Connection, count: int) -> None:
    """``count`` orders finished weeks before the period, each with its check and every tenth
    with its refund (the attempts kept longer than `history.keep` would: the worst case)."""
    conn.execute(
        """INSERT INTO product_orders (id, status, "providerId", "externalStatus", "sentAt")
           SELECT gen_random_uuid(), 'approved', %(p)s, 'done',
                  %(old)s - make_interval(mins => g)
           FROM generate_series(1, %(n)s) AS g""",
        {"p": PROVIDER_ID, "old": NOW - dt.timedelta(days=40), "n": count},
    )
    conn.execute(
        """INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,
               attempts, next_check_at, deadline, finished_at)
           SELECT id, "providerId", 'old-' || id, "sentAt", 'done', 1, "sentAt", "sentAt",
                  "sentAt" + interval '1 minute'
           FROM product_orders WHERE "sentAt" < %(old)s""",
        {"old": NOW - dt.timedelta(days=39)},
    )
    conn.execute(
        """INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at,
               latency_ms, outcome)
           SELECT id, order_id, provider_id, finished_at, 100, 'completed'
           FROM ordermon_enrolments WHERE reference LIKE 'old-%'"""
    )
    conn.execute(
        """INSERT INTO ordermon_refunds (order_id, user_id, amount, wallet_transaction_id,
               enrolment_id, refunded_at)
           SELECT order_id, gen_random_uuid(), 1, gen_random_uuid(), id, finished_at
           FROM ordermon_enrolments WHERE reference LIKE 'old-%' AND id % 10 = 0"""
    )
    conn.execute("VACUUM ANALYZE")


def test_every_query_of_gather_is_checked_here(conn: db.Connection) -> None:
    """A query added to gather() without an entry above would go unchecked."""
    ran: list[str] = []

    class Recorder:
        def execute(self, query: str, params: Any = None) -> Any:
            ran.append(query)
            return conn.execute(query, params)

        def transaction(self) -> Any:
            return conn.transaction()

    cfg = make_config("postgresql://unused", "http://unused")
    report.gather(Recorder(), cfg, NOW)  # type: ignore[arg-type]
    named = {getattr(report_sql, n): n for n in EXPECTED}
    queries = [q for q in ran if q not in report_sql.SETTINGS]
    assert sorted(named[q] for q in queries) == sorted(EXPECTED)


def _enrolment(
    conn: db.Connection, order_id: Any, state: str, sent: dt.datetime, end: dt.datetime
) -> int:
    row = conn.execute(
        "INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,"
        " next_check_at, deadline, finished_at) VALUES (%(o)s, %(p)s, %(r)s, %(s)s,"
        " %(state)s, %(s)s, %(s)s, %(end)s) RETURNING id",
        {
            "o": order_id,
            "p": PROVIDER_ID,
            "r": f"r-{sent.isoformat()}",
            "s": sent,
            "state": state,
            "end": end,
        },
    ).fetchone()
    assert row is not None
    return int(row["id"])


def _attempts(conn: db.Connection, enrolment_id: int, order_id: Any, n: int) -> None:
    conn.execute(
        "INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at,"
        " outcome) SELECT %(e)s, %(o)s, %(p)s, %(at)s, 'processing'"
        " FROM generate_series(1, %(n)s)",
        {"e": enrolment_id, "o": order_id, "p": PROVIDER_ID, "at": t(2, 10), "n": n},
    )


def test_checks_are_each_enrolments_own_attempts(conn: db.Connection) -> None:
    """An order sent twice: the superseded dispatch's checks are not the final one's; a
    finished enrolment without attempts has 0; an attempt naming the enrolment but another
    order is not counted (as the per-enrolment count never did)."""
    user = add_user(conn)
    resent = add_order(conn, user, "ref-r", sent_at=t(2, 9), orderNo=1, status="approved")
    first = _enrolment(conn, resent, "superseded", t(1, 9), t(2, 9))
    _attempts(conn, first, resent, 7)
    second = _enrolment(conn, resent, "done", t(2, 9), t(2, 10))
    _attempts(conn, second, resent, 2)
    bare = add_order(conn, user, "ref-b", sent_at=t(2, 9), orderNo=2, status="approved")
    _enrolment(conn, bare, "done", t(2, 9), t(2, 11))
    stray = add_order(conn, user, "ref-s", sent_at=t(2, 9), orderNo=3, status="approved")
    _attempts(conn, second, stray, 4)
    held = finished(conn, user, t(2, 12), 30, 3, "held", number=4)
    assert held
    cfg = make_config("postgresql://unused", "http://unused")
    figures = report.gather(conn, cfg, NOW)
    checks = {o["order_no"]: o["checks"] for o in figures["most_checked"]}
    assert checks == {1: 2, 2: 0, 4: 3}
    assert {o["order_no"]: o["checks"] for o in figures["slowest"]} == checks
    [p] = figures["providers"]
    assert p["checks_per_order"] == {"mean": round(5 / 3, 2), "p90": 2.8}
