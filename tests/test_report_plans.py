"""`ordermon report` on a long history: each query reaches ordermon's tables through the
indexes of sql/009_report_indexes.sql (not by reading every row ever written), and the checks
the database keeps per enrolment (ordermon_enrolments.checks, by trigger) are exactly its
attempts whatever writes them (the timing: benchmarks/, scenario 10)."""

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
    "FINISHED": {"ordermon_enrolments_finished"},
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
    if name == "FINISHED":
        assert "ordermon_attempts" not in plan, plan  # the checks are read, not counted


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

        autocommit = conn.autocommit

        def transaction(self) -> Any:
            return conn.transaction()

    cfg = make_config("postgresql://unused", "http://unused")
    report.gather(Recorder(), cfg, NOW)  # type: ignore[arg-type]
    named = {getattr(report_sql, n): n for n in EXPECTED}
    queries = [q for q in ran if q not in (report_sql.SNAPSHOT, *report_sql.SETTINGS)]
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


def _kept_and_counted(conn: db.Connection) -> list[tuple[int, int, int]]:
    """Each enrolment's kept checks beside the count of its own order's attempts."""
    rows = conn.execute(
        """SELECT e.id, e.checks, (SELECT count(*) FROM ordermon_attempts a
                                   WHERE a.enrolment_id = e.id AND a.order_id = e.order_id) AS n
           FROM ordermon_enrolments e ORDER BY e.id"""
    ).fetchall()
    return [(r["id"], r["checks"], r["n"]) for r in rows]


def test_the_kept_checks_follow_every_write_of_the_attempts(conn: db.Connection) -> None:
    """ordermon_enrolments.checks is the report's count whatever writes the attempts: a
    many-row insert, one row, an attempt naming another order (not counted), the retention's
    delete, an update moving attempts, a truncate, and an enrolment deleted with its attempts."""
    from ordermon.sweep import runs

    user = add_user(conn)
    one = add_order(conn, user, "ref-1", sent_at=t(2, 9), orderNo=1, status="approved")
    two = add_order(conn, user, "ref-2", sent_at=t(2, 9), orderNo=2, status="approved")
    first = _enrolment(conn, one, "done", t(2, 9), t(2, 10))
    second = _enrolment(conn, two, "done", t(2, 9, 30), t(2, 11))
    _attempts(conn, first, one, 5)
    _attempts(conn, second, two, 1)
    _attempts(conn, second, one, 4)  # names the second enrolment but another order
    assert _kept_and_counted(conn) == [(first, 5, 5), (second, 1, 1)]
    conn.execute(
        "UPDATE ordermon_attempts SET checked_at = %(old)s WHERE id IN (SELECT id FROM"
        " ordermon_attempts WHERE enrolment_id = %(e)s AND order_id = %(o)s LIMIT 2)",
        {"old": NOW - dt.timedelta(days=60), "e": first, "o": one},
    )
    assert runs.prune(conn, NOW - dt.timedelta(days=30)) == 2
    assert _kept_and_counted(conn) == [(first, 3, 3), (second, 1, 1)]
    conn.execute(
        "UPDATE ordermon_attempts SET enrolment_id = %(to)s, order_id = %(o)s"
        " WHERE enrolment_id = %(e)s",
        {"to": second, "o": two, "e": first},
    )
    assert _kept_and_counted(conn) == [(first, 0, 0), (second, 4, 4)]
    conn.execute("TRUNCATE ordermon_attempts")
    assert _kept_and_counted(conn) == [(first, 0, 0), (second, 0, 0)]
    _attempts(conn, first, one, 2)
    _attempts(conn, second, two, 3)
    conn.execute("DELETE FROM ordermon_enrolments WHERE id = %(e)s", {"e": first})
    assert _kept_and_counted(conn) == [(second, 3, 3)]
