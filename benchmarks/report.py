"""Scenario 10: `ordermon report` over 30 days of history (1,000,000 attempts, 200,000 orders).

The history is built set-based (generate_series) in a fresh database: orders across four
providers with a realistic mix of outcomes, some still waiting, every check with its latency
and errors, a refund for each refunded order; and, before the 30 days, as much again of older
history whose attempts `history.keep` (30 days) has already pruned, so that a period bounds
what the report reads. Then the report's queries (exactly those `ops.report.gather` runs,
recorded from it) are timed on the server with EXPLAIN (ANALYZE, TIMING OFF, BUFFERS), and
their plans checked for sequential scans of ordermon's tables.

    python benchmarks/run.py --dsn postgresql://postgres@127.0.0.1/postgres --only 10
"""

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml

from ordermon import config, db
from ordermon.ops import report, report_sql

ROOT = Path(__file__).resolve().parent.parent
# id, name, kind, share of the orders
PROVIDERS = (
    ("bench-znet", "znet", "znet", 0.45),
    ("bench-barakat", "barakat", "barakat", 0.30),
    ("bench-third", "third", "znet", 0.15),
    ("bench-fourth", "fourth", "barakat", 0.10),
)
ORDERS = 200_000
ATTEMPTS = 1_000_000
DAYS = 30
RUNS = 5
KEPT_TABLES = ("ordermon_attempts", "ordermon_enrolments", "ordermon_refunds")
Row = dict[str, Any]

# One row per order: who, when, what became of it, how many checks. The fates: 80 %
# completed, 8 % refunded, 4 % rejected, 3 % held, 5 % expired (at the 24 h deadline);
# those whose final state would lie in the future are still waiting now.
_PLAN = """
CREATE TEMP TABLE bench_plan AS
WITH drawn AS (
    SELECT g, random() AS fate_r, random() AS provider_r, random() AS time_r,
           random() AS checks_r, random() AS currency_r,
           %(now)s::timestamptz - %(span)s::interval * ((g - 0.5) / %(orders)s) AS sent_at
    FROM generate_series(1, %(orders)s) AS g
), fated AS (
    SELECT *, CASE WHEN fate_r < 0.80 THEN 'completed' WHEN fate_r < 0.88 THEN 'refunded'
                   WHEN fate_r < 0.92 THEN 'rejected' WHEN fate_r < 0.95 THEN 'held'
                   ELSE 'expired' END AS fate
    FROM drawn
), timed AS (
    SELECT *, CASE fate
        -- most within a minute or two, a tail of slow ones (an exponential, capped at 23 h)
        WHEN 'completed' THEN least(3 + (-ln(1 - time_r)) * CASE WHEN time_r > 0.95
                                    THEN 5400 ELSE 90 END, 82800)
        WHEN 'held' THEN 600 + (-ln(1 - time_r)) * 7200
        WHEN 'expired' THEN 86400 + time_r * 300
        ELSE 10 + (-ln(1 - time_r)) * 400 END * interval '1 second' AS took
    FROM fated
)
SELECT g, gen_random_uuid() AS id, sent_at, took, fate,
       CASE WHEN sent_at + took >= %(now)s THEN 'waiting' ELSE fate END AS state,
       (SELECT p FROM unnest(%(ids)s::text[], %(cumulative)s::float8[]) AS c(p, upto)
        WHERE provider_r < upto ORDER BY upto LIMIT 1) AS provider_id,
       CASE WHEN currency_r < 0.7 THEN 'USD' WHEN currency_r < 0.9 THEN 'EUR' ELSE 'TRY' END
           AS currency,
       -- relative weight of the checks; scaled to ATTEMPTS below
       CASE fate WHEN 'expired' THEN 6 + checks_r WHEN 'held' THEN 2 + checks_r
                 ELSE 1 + (-ln(1 - checks_r)) END AS weight
FROM timed
"""

_BUILD = (
    """UPDATE bench_plan SET weight = greatest(1, round(weight * %(attempts)s
           / (SELECT sum(weight) FROM bench_plan WHERE g <= %(orders)s)))""",
    """INSERT INTO users (id, email, balance) VALUES
           ('00000000-0000-4000-8000-000000000001', 'bench@example.com', 0)""",
    """INSERT INTO product_orders (id, "orderNo", status, "userId", "providerId",
           "externalStatus", "sentAt", provider_referans, "completedAt", "sellPriceAmount",
           "sellPriceCurrency")
       SELECT id, g, CASE WHEN state = 'completed' THEN 'approved'
                          WHEN state IN ('refunded', 'rejected') THEN 'rejected'
                          ELSE 'pending' END, '00000000-0000-4000-8000-000000000001',
              provider_id, CASE WHEN state IN ('waiting', 'held', 'expired') THEN 'sent'
                                ELSE 'done' END, sent_at, 'b' || g,
              CASE WHEN state <> 'waiting' THEN sent_at + took END,
              (5 + g %% 50)::numeric(12, 2), currency
       FROM bench_plan""",
    """INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,
           attempts, next_check_at, deadline, last_outcome, finished_at, last_checked_at)
       SELECT id, provider_id, 'b' || g, sent_at,
              CASE WHEN state IN ('completed', 'refunded', 'rejected') THEN 'done'
                   ELSE state END, weight, sent_at + took, sent_at + interval '24 hours',
              state, CASE WHEN state <> 'waiting' THEN sent_at + took END,
              least(sent_at + took, %(now)s)
       FROM bench_plan""",
    # The checks: the last at the final state, the others evenly before it (a waiting
    # order's up to now); 4 % errors (timeouts at 5 s or a 503, counted as no attempt).
    """INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at,
           latency_ms, http_status, outcome, applied, counted)
       SELECT e.id, e.order_id, e.provider_id, c.at, c.latency, c.http,
              c.outcome, CASE WHEN c.outcome IN ('completed', 'failed') THEN c.outcome END,
              c.outcome <> 'error'
       FROM bench_plan p
       JOIN ordermon_enrolments e ON e.order_id = p.id
       CROSS JOIN LATERAL (
           SELECT CASE WHEN p.state = 'waiting'
                       THEN p.sent_at + (%(now)s - p.sent_at) * j / (p.weight + 1)
                       ELSE p.sent_at + p.took * j / p.weight END AS at,
                  CASE WHEN r < 0.04 THEN CASE WHEN r < 0.02 THEN 5000 END
                       ELSE (30 + (-ln(1 - random())) * 180)::int END AS latency,
                  CASE WHEN r < 0.02 THEN NULL WHEN r < 0.04 THEN 503 ELSE 200 END AS http,
                  CASE WHEN j = p.weight AND p.state IN ('completed') THEN 'completed'
                       WHEN j = p.weight AND p.state IN ('refunded', 'rejected', 'held')
                           THEN 'failed'
                       WHEN r < 0.04 THEN 'error' ELSE 'processing' END AS outcome
           FROM generate_series(1, p.weight::int) AS j, LATERAL (SELECT random() AS r) AS x
       ) AS c
       WHERE p.g <= %(orders)s
       ORDER BY c.at""",
    """INSERT INTO ordermon_refunds (order_id, user_id, amount, wallet_transaction_id,
           enrolment_id, refunded_at)
       SELECT e.order_id, '00000000-0000-4000-8000-000000000001', 5 + p.g %% 50,
              gen_random_uuid(), e.id, e.finished_at
       FROM bench_plan p JOIN ordermon_enrolments e ON e.order_id = p.id
       WHERE p.state = 'refunded'""",
    "DROP TABLE bench_plan",
    "VACUUM ANALYZE",
)


def build(url: str, now: dt.datetime, scale: float) -> dict[str, int]:
    """The history: ORDERS orders over DAYS days before ``now``, as many again in the DAYS
    before those (their attempts pruned), ATTEMPTS attempts. Returns the table sizes."""
    orders = int(ORDERS * scale)
    shares = [share for *_, share in PROVIDERS]
    cumulative = [sum(shares[: i + 1]) for i in range(len(shares))]
    cumulative[-1] = 1.0
    params = {
        "now": now,
        "span": dt.timedelta(days=2 * DAYS),
        "orders": orders,
        "attempts": int(ATTEMPTS * scale),
        "ids": [p[0] for p in PROVIDERS],
        "cumulative": cumulative,
    }
    with db.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.12)")
        conn.execute(_PLAN, params | {"orders": 2 * orders})
        for statement in _BUILD:
            conn.execute(statement.encode() if "%(" not in statement else statement, params)
        sizes = {}
        for table in ("product_orders", *KEPT_TABLES):
            row = conn.execute(f"SELECT count(*) AS n FROM {table}".encode()).fetchone()
            sizes[table] = row["n"] if row else 0
        row = conn.execute(
            "SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting'"
        ).fetchone()
        sizes["waiting"] = row["n"] if row else 0
    return sizes


def bench_config(url: str) -> config.Config:
    return config.parse(_config_document(url), {})


def _config_document(url: str) -> dict[str, Any]:
    providers = []
    for provider_id, name, kind, _ in PROVIDERS:
        doc: dict[str, Any] = {"id": provider_id, "name": name, "kind": kind}
        doc["base_url"] = "http://127.0.0.1:9"
        doc.update({"kod": "4711", "sifre": "x"} if kind == "znet" else {"token": "x"})
        providers.append(doc)
    return {"database": {"url": url}, "timezone": "Europe/Istanbul", "providers": providers}


class _Recorder:
    """Stands in for the connection: runs each query and keeps it with its parameters."""

    def __init__(self, conn: db.Connection) -> None:
        self.conn = conn
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def execute(self, query: str, params: dict[str, Any] | None = None) -> Any:
        if query not in (report_sql.SNAPSHOT, *report_sql.SETTINGS):
            self.queries.append((query, params or {}))
        return self.conn.execute(query, params)

    @property
    def autocommit(self) -> bool:
        return self.conn.autocommit

    def transaction(self) -> Any:
        return self.conn.transaction()


def gather_queries(
    conn: db.Connection,
    cfg: config.Config,
    now: dt.datetime,
    since: dt.timedelta,
    names: tuple[str, ...],
) -> list[tuple[str, dict[str, Any]]]:
    recorder = _Recorder(conn)
    report.gather(cast(db.Connection, recorder), cfg, now, since, names)
    return recorder.queries


def explain(conn: db.Connection, query: str, params: dict[str, Any]) -> dict[str, Any]:
    """The server's own figures for one run of ``query``: planning plus execution ms, pages
    read, and the plan."""
    statement = "EXPLAIN (ANALYZE, TIMING OFF, BUFFERS, FORMAT JSON) " + query
    [row] = conn.execute(statement.encode(), params).fetchall()
    [result] = next(iter(row.values()))
    return cast(dict[str, Any], result)


def scans(node: dict[str, Any]) -> Iterator[str]:
    """``Index Scan on t using i``, ``Seq Scan on t``...: how each table is reached."""
    if "Relation Name" in node:
        how = f"{node['Node Type']} on {node['Relation Name']}"
        yield how + (f" using {node['Index Name']}" if "Index Name" in node else "")
    for child in node.get("Plans", []):
        yield from scans(child)


def _name(query: str) -> str:
    named = (n for n in dir(report_sql) if n.isupper() and getattr(report_sql, n) == query)
    return next(named, "?")


def measure(url: str, now: dt.datetime, since: dt.timedelta, names: tuple[str, ...]) -> Row:
    """RUNS rounds of gather() (wall, client side) and of each of its queries under EXPLAIN
    ANALYZE (server side): medians and maxima, per-query medians, and the plans' scans."""
    cfg = bench_config(url)
    totals, walls = [], []
    per_query: dict[str, list[float]] = {}
    plans: dict[str, set[str]] = {}
    with db.connect(url, autocommit=True) as conn:
        queries = gather_queries(conn, cfg, now, since, names)  # also warms the cache
        for setting in report_sql.SETTINGS:  # as gather() has them, for this session
            conn.execute(setting.replace("SET LOCAL", "SET"))
        for _ in range(RUNS):
            started = time.perf_counter()
            report.gather(conn, cfg, now, since, names)
            walls.append((time.perf_counter() - started) * 1000)
            total = 0.0
            for query, params in queries:
                result = explain(conn, query, params)
                ms = result["Planning Time"] + result["Execution Time"]
                total += ms
                per_query.setdefault(_name(query), []).append(ms)
                plans.setdefault(_name(query), set()).update(scans(result["Plan"]))
            totals.append(total)
    return {
        "db_median": statistics.median(totals),
        "db_max": max(totals),
        "wall_median": statistics.median(walls),
        "wall_max": max(walls),
        "per_query": {q: statistics.median(ms) for q, ms in per_query.items()},
        "plans": {q: sorted(s) for q, s in plans.items()},
    }


# The tables each query bounds by its period (the backlog: by state). The queries over the
# finished enrolments look up each one's refund by order: hashing the whole refunds table
# for that join is the planner's free choice, reported but not counted.
BOUNDED = {
    "HOURLY": ("ordermon_attempts",),
    "REFUNDS": ("ordermon_refunds",),
    "BACKLOG": ("ordermon_enrolments",),
}
FINISHED_BOUNDED = ("ordermon_enrolments", "ordermon_attempts")


def seq_scans(plans: dict[str, list[str]]) -> list[str]:
    """The sequential scans of the tables a query bounds by its period, by query."""
    return [
        f"{query}: {how}"
        for query, found in plans.items()
        for how in found
        if how.startswith("Seq Scan")
        and how.split(" on ")[1] in BOUNDED.get(query, FINISHED_BOUNDED)
    ]


def cli_wall(url: str, since: str, names: tuple[str, ...]) -> float:
    """Median wall ms of the whole `ordermon report --json` command (start-up included)."""
    path = Path(tempfile.mkstemp(prefix="ordermon-bench-", suffix=".yaml")[1])
    path.write_text(yaml.safe_dump(_config_document(url)))
    command = [sys.executable, "-m", "ordermon", "report", "--json", "--config", str(path)]
    command += ["--since", since, *(a for n in names for a in ("--provider", n))]
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, cwd=ROOT)
        times.append((time.perf_counter() - started) * 1000)
    path.unlink()
    return statistics.median(times)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
