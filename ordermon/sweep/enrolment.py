"""Enrolment: which dispatches of watched orders ordermon takes on, and which it gives up.

Every sweep enrols the dispatches that are new since its last look, under one advisory lock
(sql/006_enrol_marks.sql tells how the looks are kept cheap), expires the orders whose
checks have run out, and counts the dispatched orders it cannot watch, so they are said.
"""

import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ordermon import db
from ordermon.config import human
from ordermon.sweep import schedule, store

# A learned provider's first check: the plan's raw pause from "sentAt", its policy, and why.
FirstCheck = tuple[float, schedule.Policy, str]


def enrol_lock(conn: db.Connection) -> None:
    """One enroller at a time. The others wait the moment it takes (they hold nothing
    meanwhile), then find nothing new; had they skipped, a sweep started together with
    another would find nothing enrolled yet and leave all the work to it."""
    conn.execute("SELECT pg_advisory_xact_lock(7170001)")


def enrol(
    conn: db.Connection,
    providers: Sequence[store.ProviderRules],
    order_id: uuid.UUID | None = None,
    learned_firsts: Callable[[], dict[str, FirstCheck]] | None = None,
) -> int:
    """Enrol every new dispatch (or just ``order_id``'s), retiring the order's older
    enrolment. Call it in a transaction, under `enrol_lock`. Usually nothing is new: then it
    is one statement, which reads only the orders written since the last look.
    ``learned_firsts`` gives the learned providers' first checks; it is asked only when there
    is something new, so an idle sweep reads no learned summary."""
    fresh = conn.execute(_FRESH, fresh_params(providers, order_id)).fetchall()
    if not fresh:
        return 0
    firsts = [float(r["first_after"]) for r in fresh]
    whys = ["the first check: first_check_after"] * len(fresh)
    learned = learned_firsts() if learned_firsts is not None else {}
    for index, row in enumerate(fresh):
        if row["provider_id"] in learned:
            raw, policy, note = learned[row["provider_id"]]
            pause = schedule.learned_pause(raw, policy, random.random())
            if pause is not None:
                firsts[index] = pause
                whys[index] = f"the first check: {note}"
            # The plan knows no deadline: like every later check (schedule.decide), the
            # first is at the deadline at the latest, so the last chance is taken.
            if pause is not None and pause > float(row["give_up"]):
                firsts[index] = float(row["give_up"])
                whys[index] = "the first check: the deadline: the last chance"
    dispatches = {
        "orders": [r["order_id"] for r in fresh],
        "providers": [r["provider_id"] for r in fresh],
        "references": [r["reference"] for r in fresh],
        "sent": [r["sent_at"] for r in fresh],
    }
    # The shop sent these orders again (another provider, reference or "sentAt"): their
    # waiting enrolment gives way to the new dispatch. Never the new dispatch itself: had an
    # enroller without the lock enrolled it meanwhile, retiring it would leave the order
    # enrolled as superseded, and the insert below would find its key taken.
    conn.execute(
        """UPDATE ordermon_enrolments e
           SET state = 'superseded', finished_at = now(), claim_token = NULL,
               claimed_until = NULL, last_outcome = 'superseded',
               last_message = 'the shop sent the order again'
           FROM unnest(%(orders)b::uuid[], %(providers)b::text[], %(references)b::text[],
                       %(sent)b::timestamptz[]) AS v(order_id, provider_id, reference, sent_at)
           WHERE e.state = 'waiting' AND e.order_id = v.order_id
             AND (e.provider_id, e.reference, e.sent_at)
                 IS DISTINCT FROM (v.provider_id, v.reference, v.sent_at)""",
        dispatches,
    )
    cursor = conn.execute(
        """INSERT INTO ordermon_enrolments
               (order_id, provider_id, reference, sent_at, next_check_at, deadline,
                next_check_why)
           SELECT order_id, provider_id, reference, sent_at,
                  sent_at + make_interval(secs => first_after),
                  sent_at + make_interval(secs => give_up), why
           FROM unnest(%(orders)b::uuid[], %(providers)b::text[], %(references)b::text[],
                       %(sent)b::timestamptz[], %(first)b::float8[], %(give_up)b::float8[],
                       %(whys)b::text[])
                AS v(order_id, provider_id, reference, sent_at, first_after, give_up, why)
           ON CONFLICT DO NOTHING""",
        dispatches
        | {
            "first": firsts,
            "give_up": [r["give_up"] for r in fresh],
            "whys": whys,
        },
    )
    return max(cursor.rowcount, 0)


# Enrolment looks at every watched order at least this often, whatever its marks say: the
# marks only save work, and a full look costs a few tens of milliseconds.
FULL_LOOK_EVERY = dt.timedelta(minutes=10)

# Dispatches of watched orders that have no enrolment yet (anti-join on the dispatch key), and,
# in the same statement (so with the same snapshot), the marks moved to this look's horizon.
# Only rows written at or after a provider's mark are compared (sql/006_enrol_marks.sql);
# age() compares xids modulo wraparound, and a mark is never older than FULL_LOOK_EVERY.
_FRESH = (
    "WITH c AS ("
    + store.RULES_CTE
    + """), marked AS (
        SELECT c.*, m.full_scan_at,
               (m.horizon::text::bigint %% 4294967296)::text::xid AS horizon
        FROM c LEFT JOIN ordermon_enrol_marks m
          ON m.provider_id = c.provider_id AND m.reference_rule = c.reference_rule
         AND m.full_scan_at > now() - make_interval(secs => %(full_every)s)
         -- a mark from another cluster's history (a restored dump) is ahead of this one's
         AND m.horizon <= pg_snapshot_xmax(pg_current_snapshot())
         AND %(order_id)s::uuid IS NULL
    ), fresh AS (
        SELECT k.* FROM marked c CROSS JOIN LATERAL (
            SELECT o.id AS order_id, c.provider_id, o."sentAt" AS sent_at,
                   ordermon_reference(c.reference_rule, o.provider_referans,
                                      o."externalOrderId", o.id) AS reference,
                   c.first_after, c.give_up
            FROM product_orders o
            WHERE o."providerId" = c.provider_id
              AND o.status = 'pending'
              AND o."externalStatus" IN ('sent', 'queued', 'processing')
              AND o."sentAt" IS NOT NULL
              AND (%(order_id)s::uuid IS NULL OR o.id = %(order_id)s::uuid)
              AND (c.horizon IS NULL OR age(o.xmin) <= age(c.horizon))
            OFFSET 0  -- one scan per provider, the horizon tested in it (not after a join)
        ) k
        WHERE k.reference IS NOT NULL
          AND NOT EXISTS (
            SELECT 1 FROM ordermon_enrolments e
            WHERE e.order_id = k.order_id AND e.provider_id = k.provider_id
              AND e.reference = k.reference AND e.sent_at = k.sent_at)
    ), advanced AS (
        INSERT INTO ordermon_enrol_marks (provider_id, reference_rule, horizon, full_scan_at)
        SELECT provider_id, reference_rule, pg_snapshot_xmin(pg_current_snapshot()),
               coalesce(full_scan_at, now())
        FROM marked WHERE %(order_id)s::uuid IS NULL
        ON CONFLICT (provider_id) DO UPDATE
        SET reference_rule = excluded.reference_rule, horizon = excluded.horizon,
            full_scan_at = excluded.full_scan_at
    )
    SELECT * FROM fresh"""
)


def fresh_params(
    providers: Sequence[store.ProviderRules], order_id: uuid.UUID | None
) -> dict[str, Any]:
    return store.rules_params(providers) | {
        "order_id": order_id,
        "full_every": FULL_LOOK_EVERY.total_seconds(),
    }


def expire_exhausted(
    conn: db.Connection, providers: Sequence[store.ProviderRules], now: dt.datetime
) -> int:
    """Expire waiting orders whose last check fell at or past the deadline, or that have used
    their max_attempts (after a config change: the normal path expires at record time)."""
    query = (
        "WITH c AS ("
        + store.RULES_CTE
        + """)
        UPDATE ordermon_enrolments e
        SET state = 'expired', finished_at = %(now)s, claim_token = NULL, claimed_until = NULL,
            last_outcome = 'expired'
        FROM c
        WHERE c.provider_id = e.provider_id AND e.state = 'waiting'
          AND e.next_check_at <= %(now)s AND e.attempts >= 1
          AND (e.last_checked_at >= e.deadline
               OR (c.max_attempts IS NOT NULL AND e.attempts >= c.max_attempts))"""
    )
    return max(conn.execute(query, store.rules_params(providers) | {"now": now}).rowcount, 0)


@dataclasses.dataclass(frozen=True)
class Unwatched:
    """Dispatched orders of one provider id that no configured provider watches."""

    provider_id: str  # "" when the orders name none
    reference_rule: str | None  # None: no configured provider has this id
    orders: int

    def problem(self, names: Mapping[str, str]) -> str:
        """What to tell a person, in one line."""
        count = human.plural(self.orders, "dispatched order")
        have, name_ = ("has", "names") if self.orders == 1 else ("have", "name")
        if self.reference_rule is None and not self.provider_id:
            return f'{count} {have} no "providerId": no provider is asked about them'
        if self.reference_rule is None:
            return (
                f"{count} {name_} provider id {self.provider_id}, which is not configured: "
                "check providers[].id"
            )
        name = names.get(self.provider_id, self.provider_id)
        missing = (
            "provider_referans nor externalOrderId"
            if self.reference_rule == "provider_referans_or_external"
            else "provider_referans"
        )
        return f"{count} of {name} {have} no {missing}: ordermon cannot ask {name} about them"


def unwatched(conn: db.Connection, providers: Sequence[store.ProviderRules]) -> list[Unwatched]:
    """Dispatched orders (pending, sent, "sentAt" set) whose "providerId" names no provider
    in ``providers`` (give it all the configured ones), or whose reference is missing. One
    pass over the monitored orders' partial index, as cheap as the enrolment's own look."""
    query = "WITH c AS (" + store.RULES_CTE + ")" + _UNWATCHED
    return [Unwatched(**row) for row in conn.execute(query, store.rules_params(providers))]


def unwatched_problems(
    conn: db.Connection, providers: Sequence[store.ProviderRules], names: Mapping[str, str]
) -> list[str]:
    """The lines a sweep says about them on stderr (cron mails them), once per run."""
    return [found.problem(names) for found in unwatched(conn, providers)]


# Two index-friendly parts: per configured provider whose reference can be missing, one scan
# of its monitored orders (idx_ordermon_orders_monitored); then the monitored orders of the
# other provider ids, read from that index alone once the table is vacuumed.
_UNWATCHED = """
SELECT c.provider_id, c.reference_rule, k.n AS orders
FROM c CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM product_orders o
    WHERE o."providerId" = c.provider_id
      AND o.status = 'pending' AND o."externalStatus" IN ('sent', 'queued', 'processing')
      AND o."sentAt" IS NOT NULL
      AND ordermon_reference(c.reference_rule, o.provider_referans, o."externalOrderId",
                             o.id) IS NULL
) k
WHERE c.reference_rule <> 'order_id' AND k.n > 0
UNION ALL
SELECT coalesce(o."providerId", ''), NULL, count(*)
FROM product_orders o
WHERE o.status = 'pending' AND o."externalStatus" IN ('sent', 'queued', 'processing')
  AND o."sentAt" IS NOT NULL
  AND NOT coalesce(o."providerId", '') = ANY(%(provider_ids)b::text[])
GROUP BY 1
ORDER BY 1
"""
