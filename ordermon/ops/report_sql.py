"""The SQL of `ordermon report`: every figure over a period, per provider, computed in the
database (percentiles included) so that the answer stays small whatever the history.

Parameters: ``since`` and ``now`` (timestamptz), ``tz`` (the configured zone, for days and
hours), ``providers`` (provider ids, or NULL for every one), ``edges`` (bucket edges in
seconds, ascending), ``limit`` (the longest lists)."""

# The first statement of the report's transaction: every figure from one snapshot.
SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# For the report's own transaction only. JIT compilation of these large queries cost more
# than it saved: 1.2 to 1.6 s of inlining and optimisation for the time to final alone at
# 200,000 finished orders (benchmarks/RESULTS.md, scenario 10). Hash tables may take 8 times
# work_mem (32 MB at the default 4 MB): a month's finished enrolments are joined to their
# orders by a hash of the shop's orders (29 MB for 400,000). work_mem itself is left alone:
# the hourly sort measured slower in memory than spilled.
SETTINGS = ("SET LOCAL jit = off", "SET LOCAL hash_mem_multiplier = 8")

# Every figure of the enrolments that reached a final state in the period, in one statement
# so that the period's finished enrolments (by ordermon_enrolments_finished, with their
# outcome) and their checks are found once, not once per figure: one row, one JSON list per
# figure (timestamps as ISO 8601 text, float8 in shortest exact form).
# The outcome: done + approved: completed; done with a refund of this enrolment: refunded;
# other done: rejected (a failure answered without a refund); held and expired as they are.
# The checks: the attempts of each enrolment (its order's, by its id), kept in
# ordermon_enrolments.checks by the database (sql/009) rather than counted here.
# width_bucket: 0 below the first edge, i for [edges[i], edges[i+1]), len(edges) past the last.
FINISHED = """
WITH finished AS MATERIALIZED (
    SELECT e.id, e.order_id, e.provider_id, e.sent_at, e.finished_at, e.checks,
           extract(epoch FROM e.finished_at - e.sent_at)::float8 AS seconds,
           CASE WHEN e.state = 'held' THEN 'held'
                WHEN e.state = 'expired' THEN 'expired'
                WHEN o.status = 'approved' THEN 'completed'
                WHEN r.order_id IS NOT NULL THEN 'refunded'
                ELSE 'rejected' END AS outcome,
           o."orderNo" AS order_no
    FROM ordermon_enrolments e
    LEFT JOIN product_orders o ON o.id = e.order_id
    LEFT JOIN ordermon_refunds r ON r.order_id = e.order_id AND r.enrolment_id = e.id
    WHERE e.state IN ('done', 'held', 'expired')
      AND e.finished_at >= %(since)s AND e.finished_at < %(now)s
      AND (%(providers)s::text[] IS NULL OR e.provider_id = ANY(%(providers)s::text[]))
)
SELECT
    (SELECT json_agg(t) FROM (
        SELECT provider_id COLLATE "C" AS provider_id, count(*) AS finished,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) AS p99,
               avg(checks)::float8 AS checks_mean,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY checks) AS checks_p90
        FROM finished GROUP BY 1) AS t) AS time_to_final,
    (SELECT json_agg(t) FROM (
        SELECT provider_id, width_bucket(seconds, %(edges)s::float8[]) AS bucket, count(*) AS n
        FROM finished GROUP BY 1, 2) AS t) AS histogram,
    (SELECT json_agg(t) FROM (
        SELECT provider_id, (finished_at AT TIME ZONE %(tz)s)::date AS day, outcome,
               count(*) AS n
        FROM finished GROUP BY 1, 2, 3) AS t) AS outcomes,
    (SELECT json_agg(t ORDER BY seconds DESC, order_id) FROM (
        SELECT order_id, order_no, provider_id, seconds, checks, outcome, finished_at
        FROM finished ORDER BY seconds DESC, order_id LIMIT %(limit)s) AS t) AS slowest,
    (SELECT json_agg(t ORDER BY checks DESC, seconds DESC, order_id) FROM (
        SELECT order_id, order_no, provider_id, seconds, checks, outcome, finished_at
        FROM finished ORDER BY checks DESC, seconds DESC, order_id LIMIT %(limit)s) AS t)
        AS most_checked
"""

# By time (ordermon_attempts_checked_at): every check of the period, per provider and hour.
# Hours of the zone truncated in the zone: the hour a DST day repeats stays two hours.
# Sorted for the groups by hour first and by provider in bytes (COLLATE "C": the same
# groups, equal strings are equal in any deterministic collation): a month's million checks
# sorted in half the time of provider first in the database's collation (strcoll per
# comparison; benchmarks/RESULTS.md, scenario 10). The rows' order does not matter.
HOURLY = """
SELECT provider_id COLLATE "C" AS provider_id,
       date_trunc('hour', checked_at, %(tz)s) AS hour,
       count(*) AS checks,
       count(*) FILTER (WHERE outcome = 'error') AS errors,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
FROM ordermon_attempts
WHERE checked_at >= %(since)s AND checked_at < %(now)s
  AND (%(providers)s::text[] IS NULL OR provider_id = ANY(%(providers)s::text[]))
GROUP BY 2, 1
"""

# The provider of the refunded enrolment: the shop may change the order's "providerId" since.
REFUNDS = """
SELECT coalesce(e.provider_id, o."providerId") AS provider_id,
       (r.refunded_at AT TIME ZONE %(tz)s)::date AS day,
       o."sellPriceCurrency" AS currency, count(*) AS n, sum(r.amount) AS amount
FROM ordermon_refunds r
JOIN product_orders o ON o.id = r.order_id
LEFT JOIN ordermon_enrolments e ON e.id = r.enrolment_id
WHERE r.refunded_at >= %(since)s AND r.refunded_at < %(now)s
  AND (%(providers)s::text[] IS NULL
       OR coalesce(e.provider_id, o."providerId") = ANY(%(providers)s::text[]))
GROUP BY 1, 2, 3
"""

# The orders still waiting now, by how long since they were sent.
BACKLOG = """
SELECT provider_id,
       width_bucket(extract(epoch FROM %(now)s - sent_at)::float8, %(edges)s::float8[]) AS bucket,
       count(*) AS n
FROM ordermon_enrolments
WHERE state = 'waiting'
  AND (%(providers)s::text[] IS NULL OR provider_id = ANY(%(providers)s::text[]))
GROUP BY 1, 2
"""
