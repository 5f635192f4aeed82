"""The SQL ordermon runs on the shop's own tables: product_orders, users, wallet_transactions.

Every statement here is a compare-and-set on the order: it applies only while the order still is
the pending dispatch the claim asked about, so an admin's decision or a re-send always wins.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from ordermon import db
from ordermon.sweep import store


@dataclasses.dataclass(frozen=True)
class LockedOrder:
    user_id: uuid.UUID | None
    amount: Any  # Decimal: the total the customer was charged, in their balance's currency
    currency: str
    order_no: int | None


def lock_orders(conn: db.Connection, claims: Sequence[store.Claim]) -> dict[uuid.UUID, LockedOrder]:
    """Lock the orders that still are their claim's pending dispatch (compare-and-set), in id
    order; the others are missing from the result."""
    if not claims:
        return {}
    rows = conn.execute(
        """SELECT o.id, o."userId" AS user_id, o."sellPriceAmount" AS amount,
                  o."sellPriceCurrency" AS currency, o."orderNo" AS order_no
           FROM product_orders o
           JOIN unnest(%(order_id)b::uuid[], %(provider_id)b::text[],
                       %(sent_at)b::timestamptz[], %(reference_rule)b::text[],
                       %(reference)b::text[])
                AS v(order_id, provider_id, sent_at, reference_rule, reference)
             ON o.id = v.order_id
           WHERE o.status = 'pending'
             AND o."externalStatus" IN ('sent', 'queued', 'processing')
             AND o."providerId" = v.provider_id AND o."sentAt" = v.sent_at
             AND ordermon_reference(v.reference_rule, o.provider_referans, o."externalOrderId",
                                    o.id) = v.reference
           ORDER BY o.id FOR UPDATE OF o""",
        {
            "order_id": [c.order_id for c in claims],
            "provider_id": [c.provider_id for c in claims],
            "sent_at": [c.sent_at for c in claims],
            "reference_rule": [c.reference_rule for c in claims],
            "reference": [c.reference for c in claims],
        },
    )
    return {row.pop("id"): LockedOrder(**row) for row in rows}


@dataclasses.dataclass(frozen=True)
class OrderWrite:
    """One outcome to write to product_orders (see the table in DESIGN.md)."""

    claim: store.Claim
    now: dt.datetime
    external_status: str
    message: str | None
    status: str | None = None
    pin: str | None = None
    set_pin: bool = False
    finished: bool = False
    note: str | None = None


def write_orders(conn: db.Connection, writes: Sequence[OrderWrite]) -> set[uuid.UUID]:
    """Write many outcomes in one statement; each row only while its order still is its
    claim's pending dispatch (compare-and-set). Returns the orders written."""
    if not writes:
        return set()
    columns: dict[str, list[Any]] = {name: [] for name in _WRITE_COLUMNS}
    for w in writes:
        claim = w.claim
        values = (
            claim.order_id,
            claim.provider_id,
            claim.sent_at,
            claim.reference_rule,
            claim.reference,
            w.status,
            w.external_status,
            w.pin,
            w.set_pin,
            w.finished,
            w.message,
            w.note,
            w.now,
            w.now.astimezone(dt.UTC).isoformat(),
        )
        for name, value in zip(_WRITE_COLUMNS, values, strict=True):
            columns[name].append(value)
    rows = conn.execute(_WRITE_ORDERS, columns)
    return {row["id"] for row in rows}


# The unnest() columns of _WRITE_ORDERS, in order.
_WRITE_COLUMNS = (
    "order_id",
    "provider_id",
    "sent_at",
    "reference_rule",
    "reference",
    "status",
    "external_status",
    "pin",
    "set_pin",
    "finished",
    "message",
    "note",
    "now",
    "now_iso",
)
_V_NOTES = """(CASE WHEN jsonb_typeof(o.notes) = 'array' THEN o.notes ELSE '[]'::jsonb END
    || jsonb_build_array(jsonb_build_object('by', 'system', 'text', v.note, 'at', v.now_iso)))"""
_WRITE_ORDERS = (
    """UPDATE product_orders o SET
        status = COALESCE(v.status, o.status),
        "externalStatus" = v.external_status,
        "pinCode" = CASE WHEN v.set_pin THEN v.pin ELSE o."pinCode" END,
        "completedAt" = CASE WHEN v.finished THEN v.now ELSE o."completedAt" END,
        "approvedAt" = CASE WHEN v.status = 'approved' THEN v.now ELSE o."approvedAt" END,
        "durationMs" = CASE WHEN v.finished AND o."sentAt" IS NOT NULL
            THEN LEAST(GREATEST(EXTRACT(EPOCH FROM (v.now - o."sentAt")) * 1000, 0),
                       2147483647)::integer
            ELSE o."durationMs" END,
        "lastSyncAt" = v.now,
        "providerMessage" = COALESCE(v.message, o."providerMessage"),
        "lastMessage" = COALESCE(left(v.message, 250), o."lastMessage"),
        notes = CASE WHEN v.note IS NULL THEN o.notes ELSE """
    + _V_NOTES
    + """ END,
        "notesCount" = CASE WHEN v.note IS NULL THEN o."notesCount"
            ELSE jsonb_array_length("""
    + _V_NOTES
    + """) END
    FROM unnest(%(order_id)b::uuid[], %(provider_id)b::text[], %(sent_at)b::timestamptz[],
                %(reference_rule)b::text[], %(reference)b::text[], %(status)b::text[],
                %(external_status)b::text[], %(pin)b::text[], %(set_pin)b::boolean[],
                %(finished)b::boolean[], %(message)b::text[], %(note)b::text[],
                %(now)b::timestamptz[], %(now_iso)b::text[])
         AS v(order_id, provider_id, sent_at, reference_rule, reference, status,
              external_status, pin, set_pin, finished, message, note, now, now_iso)
    WHERE o.id = v.order_id
      AND o.status = 'pending'
      AND o."externalStatus" IN ('sent', 'queued', 'processing')
      AND o."providerId" = v.provider_id
      AND o."sentAt" = v.sent_at
      AND ordermon_reference(v.reference_rule, o.provider_referans, o."externalOrderId", o.id)
          = v.reference
    RETURNING o.id"""
)


@dataclasses.dataclass(frozen=True)
class Refund:
    claim: store.Claim
    user_id: uuid.UUID
    amount: Any  # Decimal
    description: str
    now: dt.datetime


def insert_refunds(conn: db.Connection, refunds: Sequence[Refund]) -> set[uuid.UUID]:
    """Give customers back what they paid, once per order; returns the orders refunded now
    (an order refunded before is left out, and nothing moves for it).

    The primary key of ordermon_refunds makes a second refund of one order impossible, even
    for two transactions racing each other. Several refunds to one customer in a batch get
    their wallet rows with running balances, in order."""
    if not refunds:
        return set()
    transactions = {r.claim.order_id: uuid.uuid4() for r in refunds}
    fresh = {
        row["order_id"]
        for row in conn.execute(
            """INSERT INTO ordermon_refunds
                   (order_id, user_id, amount, wallet_transaction_id, enrolment_id, refunded_at)
               SELECT * FROM unnest(%(orders)b::uuid[], %(users)b::uuid[],
                   %(amounts)b::numeric[], %(txs)b::uuid[], %(enrolments)b::bigint[],
                   %(nows)b::timestamptz[])
               ON CONFLICT (order_id) DO NOTHING RETURNING order_id""",
            {
                "orders": [r.claim.order_id for r in refunds],
                "users": [r.user_id for r in refunds],
                "amounts": [r.amount for r in refunds],
                "txs": [transactions[r.claim.order_id] for r in refunds],
                "enrolments": [r.claim.enrolment_id for r in refunds],
                "nows": [r.now for r in refunds],
            },
        )
    }
    paid = [r for r in refunds if r.claim.order_id in fresh]
    if paid:
        conn.execute(
            """WITH r AS (
                   SELECT * FROM unnest(%(orders)b::uuid[], %(users)b::uuid[],
                       %(amounts)b::numeric[], %(txs)b::uuid[], %(descriptions)b::text[],
                       %(nows)b::timestamptz[])
                   WITH ORDINALITY AS v(order_id, user_id, amount, tx, description, now, n)
               ), totals AS (
                   SELECT user_id, sum(amount) AS total FROM r GROUP BY user_id
               ), credited AS (
                   UPDATE users u SET balance = u.balance + t.total FROM totals t
                   WHERE u.id = t.user_id
                   RETURNING u.id, u.balance - t.total AS before
               )
               INSERT INTO wallet_transactions (id, "userId", "orderId", type, amount,
                   "balanceBefore", "balanceAfter", description, "createdAt")
               SELECT r.tx, r.user_id, r.order_id, 'refund', r.amount,
                      c.before + sum(r.amount) OVER w - r.amount,
                      c.before + sum(r.amount) OVER w, r.description, r.now
               FROM r JOIN credited c ON c.id = r.user_id
               WINDOW w AS (PARTITION BY r.user_id ORDER BY r.n)""",
            {
                "orders": [r.claim.order_id for r in paid],
                "users": [r.user_id for r in paid],
                "amounts": [r.amount for r in paid],
                "txs": [transactions[r.claim.order_id] for r in paid],
                "descriptions": [r.description for r in paid],
                "nows": [r.now for r in paid],
            },
        )
    return fresh


# At most this many orders sharing one number are named in a message.
NUMBERED_SHOWN = 10


def orders_numbered(
    conn: db.Connection, order_no: int, tenant_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    """The orders whose ``"orderNo"`` is ``order_no`` (in ``tenant_id`` only, when given): at
    most NUMBERED_SHOWN + 1, so a caller can tell "more"."""
    rows = conn.execute(
        """SELECT id, "tenantId" AS tenant_id FROM product_orders
           WHERE "orderNo" = %(order_no)s
             AND (%(tenant_id)s::uuid IS NULL OR "tenantId" = %(tenant_id)s::uuid)
           ORDER BY "tenantId" NULLS FIRST, id
           LIMIT %(limit)s""",
        {"order_no": order_no, "tenant_id": tenant_id, "limit": NUMBERED_SHOWN + 1},
    )
    return list(rows)
