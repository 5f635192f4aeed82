"""The SQL ordermon runs on the shop's own tables: product_orders, users, wallet_transactions.

Every statement here is a compare-and-set on the order: it applies only while the order still is
the pending dispatch the claim asked about, so an admin's decision or a re-send always wins.
"""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from ordermon import db, store


@dataclasses.dataclass(frozen=True)
class LockedOrder:
    user_id: uuid.UUID | None
    amount: Any  # Decimal: the total the customer was charged, in their balance's currency
    currency: str
    order_no: int | None


# The order still is the dispatch the enrolment watches: pending, monitored, same key.
_SAME_DISPATCH = """
    o.status = 'pending'
    AND o."externalStatus" IN ('sent', 'queued', 'processing')
    AND o."providerId" = %(provider_id)s
    AND o."sentAt" = %(sent_at)s
    AND ordermon_reference(%(reference_rule)s, o.provider_referans, o."externalOrderId", o.id)
        = %(reference)s
"""


def lock_order(conn: db.Connection, claim: store.Claim) -> LockedOrder | None:
    """Lock the order row if it still is this claim's pending dispatch (compare-and-set)."""
    row = conn.execute(
        'SELECT o."userId" AS user_id, o."sellPriceAmount" AS amount, '
        'o."sellPriceCurrency" AS currency, o."orderNo" AS order_no '
        "FROM product_orders o WHERE o.id = %(order_id)s AND " + _SAME_DISPATCH + " FOR UPDATE",
        _dispatch(claim),
    ).fetchone()
    return LockedOrder(**row) if row else None


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


def write_order(conn: db.Connection, claim: store.Claim, **changes: Any) -> bool:
    """Write one outcome, only while the order still is this claim's dispatch."""
    return claim.order_id in write_orders(conn, [OrderWrite(claim, **changes)])


def write_orders(conn: db.Connection, writes: Sequence[OrderWrite]) -> set[uuid.UUID]:
    """Write many outcomes in one statement; each row only while its order still is its
    claim's pending dispatch (compare-and-set). Returns the orders written."""
    if not writes:
        return set()
    columns: dict[str, list[Any]] = {name: [] for name, _ in _WRITE_COLUMNS}
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
        for (name, _), value in zip(_WRITE_COLUMNS, values, strict=True):
            columns[name].append(value)
    rows = conn.execute(_WRITE_ORDERS, columns)
    return {row["id"] for row in rows}


_WRITE_COLUMNS = (
    ("order_id", "uuid"),
    ("provider_id", "text"),
    ("sent_at", "timestamptz"),
    ("reference_rule", "text"),
    ("reference", "text"),
    ("status", "text"),
    ("external_status", "text"),
    ("pin", "text"),
    ("set_pin", "boolean"),
    ("finished", "boolean"),
    ("message", "text"),
    ("note", "text"),
    ("now", "timestamptz"),
    ("now_iso", "text"),
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
    FROM unnest(%(order_id)s::uuid[], %(provider_id)s::text[], %(sent_at)s::timestamptz[],
                %(reference_rule)s::text[], %(reference)s::text[], %(status)s::text[],
                %(external_status)s::text[], %(pin)s::text[], %(set_pin)s::boolean[],
                %(finished)s::boolean[], %(message)s::text[], %(note)s::text[],
                %(now)s::timestamptz[], %(now_iso)s::text[])
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


def insert_refund(
    conn: db.Connection,
    claim: store.Claim,
    user_id: uuid.UUID,
    amount: Any,
    description: str,
    now: dt.datetime,
) -> bool:
    """Give the customer back what they paid, once: False when this order was refunded before.

    The primary key of ordermon_refunds makes a second refund of one order impossible, even
    for two transactions racing each other.
    """
    transaction_id = uuid.uuid4()
    claimed = conn.execute(
        """INSERT INTO ordermon_refunds
               (order_id, user_id, amount, wallet_transaction_id, enrolment_id, refunded_at)
           VALUES (%(order_id)s, %(user_id)s, %(amount)s, %(tx)s, %(enrolment_id)s, %(now)s)
           ON CONFLICT (order_id) DO NOTHING""",
        {
            "order_id": claim.order_id,
            "user_id": user_id,
            "amount": amount,
            "tx": transaction_id,
            "enrolment_id": claim.enrolment_id,
            "now": now,
        },
    )
    if claimed.rowcount != 1:
        return False
    conn.execute(
        """WITH credited AS (
               UPDATE users SET balance = balance + %(amount)s WHERE id = %(user_id)s
               RETURNING balance
           )
           INSERT INTO wallet_transactions (id, "userId", "orderId", type, amount,
               "balanceBefore", "balanceAfter", description, "createdAt")
           SELECT %(tx)s, %(user_id)s, %(order_id)s, 'refund', %(amount)s,
               balance - %(amount)s, balance, %(description)s, %(now)s
           FROM credited""",
        {
            "tx": transaction_id,
            "user_id": user_id,
            "order_id": claim.order_id,
            "amount": amount,
            "description": description,
            "now": now,
        },
    )
    return True


def _dispatch(claim: store.Claim) -> dict[str, Any]:
    return {
        "order_id": claim.order_id,
        "provider_id": claim.provider_id,
        "sent_at": claim.sent_at,
        "reference_rule": claim.reference_rule,
        "reference": claim.reference,
    }
