"""The queries a sweep runs on every minute use indexes, not table scans, however large
product_orders and ordermon's history grow (the timing itself is measured in benchmarks/)."""

import datetime as dt
import uuid

from ordermon import db
from ordermon.sweep import enrolment, store
from tests.conftest import PROVIDER_ID

RULES = [
    store.ProviderRules(
        PROVIDER_ID, "provider_referans", dt.timedelta(0), dt.timedelta(hours=24), None
    )
]


def _plan(conn: db.Connection, query: str, params: dict[str, object]) -> str:
    rows = conn.execute(("EXPLAIN " + query).encode(), params)
    return "\n".join(row["QUERY PLAN"] for row in rows)


def test_enrolment_and_claim_use_indexes(conn: db.Connection) -> None:
    """With sequential scans priced out, every table is reached through an index: so an index
    exists for each access path (a missing one would still show a Seq Scan)."""
    conn.execute("""INSERT INTO users (id, email) VALUES
                    ('00000000-0000-4000-8000-000000000001', 'u@example.com')""")
    conn.execute(
        """INSERT INTO product_orders (id, status, "userId", "providerId", "externalStatus",
               "sentAt", provider_referans)
           SELECT gen_random_uuid(), CASE WHEN g %% 10 = 0 THEN 'pending' ELSE 'approved' END,
                  '00000000-0000-4000-8000-000000000001', %(provider)s,
                  CASE WHEN g %% 10 = 0 THEN 'sent' ELSE 'done' END, now(), 'r' || g
           FROM generate_series(1, 5000) AS g""",
        {"provider": PROVIDER_ID},
    )
    with conn.transaction():
        enrolment.enrol(conn, RULES)
    conn.execute("ANALYZE")
    conn.execute("SET enable_seqscan = off")
    params = enrolment.fresh_params(RULES, None)
    fresh = _plan(conn, enrolment._FRESH, params)
    assert "idx_ordermon_orders_monitored" in fresh
    assert "ordermon_enrolments_dispatch" in fresh
    assert "Seq Scan on product_orders" not in fresh
    assert "Seq Scan on ordermon_enrolments" not in fresh
    now = dt.datetime.now(dt.UTC)
    with conn.transaction():
        claims = store.claim(conn, RULES, 5, uuid.uuid4(), now, now + dt.timedelta(minutes=5))
        assert len(claims) == 5
        captured = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert captured is not None
    due = _plan(
        conn,
        "SELECT e.id FROM ordermon_enrolments e WHERE e.state = 'waiting' "
        "AND e.provider_id = ANY(%(ids)s::text[]) AND e.next_check_at <= %(now)s "
        "ORDER BY e.next_check_at LIMIT 500",
        {"ids": [PROVIDER_ID], "now": now},
    )
    assert "ordermon_enrolments_due" in due and "Seq Scan" not in due
