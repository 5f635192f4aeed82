"""The SQL of claims and their release, in one place: typed functions, named parameters
(enrolment's is in `enrolment`, the shop's tables' in `shop`).

Every write that follows a provider call is guarded twice: by the claim token of the run that
claimed the enrolment (a sweep that lost its lease changes nothing), and by a compare-and-set
on product_orders (still pending, same dispatch), so an admin's decision or a re-send wins.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg.rows

from ordermon import db

MONITORED_EXTERNAL = ("sent", "queued", "processing")


@dataclasses.dataclass(frozen=True)
class ProviderRules:
    """What the SQL needs to know of one configured provider."""

    id: str
    reference_rule: str
    first_check_after: dt.timedelta
    give_up_after: dt.timedelta
    max_attempts: int | None


class Claim(NamedTuple):
    """An enrolment a run holds under its lease. ``attempts`` is the number this check will
    be if it counts (it counts once a provider answers it: see `Release.counted`). (A named
    tuple: a busy sweep makes thousands a second, straight from the claim's rows, in the
    order of its RETURNING list.)"""

    enrolment_id: int
    order_id: uuid.UUID
    provider_id: str
    reference: str
    sent_at: dt.datetime
    attempts: int
    deadline: dt.datetime
    reference_rule: str
    still_current: bool
    token: uuid.UUID


RULES_CTE = """
    SELECT * FROM unnest(
        %(provider_ids)b::text[], %(rules)b::text[], %(first_after)b::float8[],
        %(give_up)b::float8[], %(max_attempts)b::int[]
    ) AS c(provider_id, reference_rule, first_after, give_up, max_attempts)
"""


def rules_params(providers: Sequence[ProviderRules]) -> dict[str, Any]:
    return {
        "provider_ids": [p.id for p in providers],
        "rules": [p.reference_rule for p in providers],
        "first_after": [p.first_check_after.total_seconds() for p in providers],
        "give_up": [p.give_up_after.total_seconds() for p in providers],
        "max_attempts": [p.max_attempts for p in providers],
    }


def claim(
    conn: db.Connection,
    providers: Sequence[ProviderRules],
    limit: int,
    token: uuid.UUID,
    now: dt.datetime,
    lease_end: dt.datetime,
    enrolment_id: int | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` due enrolments (SKIP LOCKED).

    The lease's end becomes the next check, so a claim whose sweep died is due again then.
    No attempt is counted here: a run killed before its request reached the provider must not
    spend the order's attempts; recording counts the checks that were answered.
    """
    query = (
        "WITH c AS ("
        + RULES_CTE
        + """),
        due AS (
            SELECT e.id, e.order_id, e.provider_id FROM ordermon_enrolments e
            WHERE e.state = 'waiting'
              AND e.provider_id = ANY(%(provider_ids)b::text[])
              AND (CASE WHEN %(enrolment_id)s::bigint IS NULL
                        THEN e.next_check_at <= %(now)s
                        ELSE e.id = %(enrolment_id)s::bigint
                             AND (e.claimed_until IS NULL OR e.claimed_until <= %(now)s) END)
            ORDER BY e.next_check_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE ordermon_enrolments e
        SET claim_token = %(token)s, claimed_until = %(lease_end)s,
            next_check_at = %(lease_end)s
        FROM due JOIN c ON c.provider_id = due.provider_id
        LEFT JOIN product_orders o ON o.id = due.order_id
        WHERE e.id = due.id
        RETURNING e.id AS enrolment_id, e.order_id, e.provider_id, e.reference, e.sent_at,
                  e.attempts + 1 AS attempts, e.deadline, c.reference_rule,
                  COALESCE(o.status = 'pending'
                      AND o."externalStatus" IN ('sent', 'queued', 'processing')
                      AND o."providerId" = e.provider_id AND o."sentAt" = e.sent_at
                      AND ordermon_reference(c.reference_rule, o.provider_referans,
                                             o."externalOrderId", o.id) = e.reference,
                      false) AS still_current"""
    )
    params = rules_params(providers) | {
        "limit": limit,
        "token": token,
        "now": now,
        "lease_end": lease_end,
        "enrolment_id": enrolment_id,
    }
    rows = conn.cursor(row_factory=psycopg.rows.tuple_row).execute(query, params)
    return [Claim._make((*row, token)) for row in rows]


def supersede_claims(
    conn: db.Connection, claims: Sequence[Claim], message: str, now: dt.datetime
) -> int:
    """Retire claimed enrolments whose order was decided or re-sent elsewhere."""
    if not claims:
        return 0
    cursor = conn.execute(
        """UPDATE ordermon_enrolments SET state = 'superseded', finished_at = %(now)s,
               claim_token = NULL, claimed_until = NULL, last_outcome = 'superseded',
               last_message = %(message)s
           WHERE id = ANY(%(ids)s) AND claim_token = %(token)s AND state = 'waiting'""",
        {
            "ids": [c.enrolment_id for c in claims],
            "token": claims[0].token,
            "message": message,
            "now": now,
        },
    )
    return max(cursor.rowcount, 0)


@dataclasses.dataclass(frozen=True)
class Release:
    """How a run lets go of one claim. A ``counted`` release (a provider answered this check)
    spends the attempt and marks the order checked; the others (provider trouble, a check
    never sent, one abandoned at the time limit) change neither."""

    claim: Claim
    state: str
    outcome: str
    message: str | None
    next_check_at: dt.datetime | None
    now: dt.datetime
    counted: bool = True
    why: str | None = None  # why the next check is then (`ordermon show`); None: unchanged


def release_claims(conn: db.Connection, releases: Sequence[Release]) -> int:
    """End this run's hold on many enrolments in one statement (each guarded by its token)."""
    if not releases:
        return 0
    cursor = conn.execute(
        """UPDATE ordermon_enrolments e
           SET state = v.state, claim_token = NULL, claimed_until = NULL,
               next_check_at = COALESCE(v.next_check_at, e.next_check_at),
               next_check_why = COALESCE(v.why, e.next_check_why),
               attempts = e.attempts + CASE WHEN v.counted THEN 1 ELSE 0 END,
               last_checked_at = CASE WHEN v.counted THEN v.now ELSE e.last_checked_at END,
               last_outcome = v.outcome, last_message = v.message,
               finished_at = CASE WHEN v.state = 'waiting' THEN NULL ELSE v.now END
           FROM unnest(%(ids)b::bigint[], %(tokens)b::uuid[], %(states)b::text[],
                       %(outcomes)b::text[], %(messages)b::text[],
                       %(nexts)b::timestamptz[], %(counted)b::boolean[],
                       %(nows)b::timestamptz[], %(whys)b::text[])
                AS v(id, token, state, outcome, message, next_check_at, counted, now, why)
           WHERE e.id = v.id AND e.claim_token = v.token AND e.state = 'waiting'""",
        {
            "ids": [r.claim.enrolment_id for r in releases],
            "tokens": [r.claim.token for r in releases],
            "states": [r.state for r in releases],
            "outcomes": [r.outcome for r in releases],
            "messages": [r.message for r in releases],
            "nexts": [r.next_check_at for r in releases],
            "counted": [r.counted for r in releases],
            "nows": [r.now for r in releases],
            "whys": [r.why for r in releases],
        },
    )
    return max(cursor.rowcount, 0)


def held_claims(conn: db.Connection, claims: Sequence[Claim]) -> set[int]:
    """The enrolments this run still holds (locked, in id order, for the transaction)."""
    rows = conn.execute(
        """SELECT e.id FROM ordermon_enrolments e
           JOIN unnest(%(ids)b::bigint[], %(tokens)b::uuid[]) AS v(id, token)
             ON e.id = v.id AND e.claim_token = v.token
           WHERE e.state = 'waiting' ORDER BY e.id FOR UPDATE OF e""",
        {"ids": [c.enrolment_id for c in claims], "tokens": [c.token for c in claims]},
    )
    return {row["id"] for row in rows}


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One provider call, as `ordermon show` tells it."""

    claim: Claim
    run_id: int | None
    checked_at: dt.datetime
    outcome: str
    applied: str | None
    latency_ms: int | None
    http_status: int | None
    message: str | None
    excerpt: str | None
    # Whether this check spent one of the enrolment's attempts, and the provider's trouble
    # (transport, credentials, throttled) that kept it from counting, if any.
    counted: bool = False
    trouble: str | None = None


def insert_attempts(conn: db.Connection, attempts: Sequence[Attempt]) -> None:
    if not attempts:
        return
    conn.execute(
        """INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, run_id,
               checked_at, latency_ms, http_status, outcome, applied, message, excerpt,
               counted, trouble)
           SELECT * FROM unnest(%(enrolments)b::bigint[], %(orders)b::uuid[],
               %(providers)b::text[], %(runs)b::bigint[], %(times)b::timestamptz[],
               %(latencies)b::int[], %(statuses)b::int[], %(outcomes)b::text[],
               %(applied)b::text[], %(messages)b::text[], %(excerpts)b::text[],
               %(counted)b::boolean[], %(troubles)b::text[])""",
        {
            "enrolments": [a.claim.enrolment_id for a in attempts],
            "orders": [a.claim.order_id for a in attempts],
            "providers": [a.claim.provider_id for a in attempts],
            "runs": [a.run_id for a in attempts],
            "times": [a.checked_at for a in attempts],
            "latencies": [a.latency_ms for a in attempts],
            "statuses": [a.http_status for a in attempts],
            "outcomes": [a.outcome for a in attempts],
            "applied": [a.applied for a in attempts],
            "messages": [a.message for a in attempts],
            "excerpts": [a.excerpt for a in attempts],
            "counted": [a.counted for a in attempts],
            "troubles": [a.trouble for a in attempts],
        },
    )


def count_due(conn: db.Connection, provider_ids: list[str], now: dt.datetime) -> int:
    """Orders due now (for a progress bar: only asked on a terminal)."""
    row = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting' "
        "AND next_check_at <= %(now)s AND provider_id = ANY(%(ids)s)",
        {"now": now, "ids": provider_ids},
    ).fetchone()
    return int(row["n"]) if row else 0
