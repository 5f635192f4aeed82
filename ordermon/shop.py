"""The SQL ordermon runs on the shop's own tables: product_orders, users, wallet_transactions.

Every statement here is a compare-and-set on the order: it applies only while the order still is
the pending dispatch the claim asked about, so an admin's decision or a re-send always wins.
"""

import dataclasses
import datetime as dt
import uuid
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
_NOTES = """(CASE WHEN jsonb_typeof(o.notes) = 'array' THEN o.notes ELSE '[]'::jsonb END
    || jsonb_build_array(jsonb_build_object('by', 'system', 'text', %(note)s::text,
       'at', %(now_iso)s::text)))"""


def lock_order(conn: db.Connection, claim: store.Claim) -> LockedOrder | None:
    """Lock the order row if it still is this claim's pending dispatch (compare-and-set)."""
    row = conn.execute(
        'SELECT o."userId" AS user_id, o."sellPriceAmount" AS amount, '
        'o."sellPriceCurrency" AS currency, o."orderNo" AS order_no '
        "FROM product_orders o WHERE o.id = %(order_id)s AND " + _SAME_DISPATCH + " FOR UPDATE",
        _dispatch(claim),
    ).fetchone()
    return LockedOrder(**row) if row else None


def write_order(
    conn: db.Connection,
    claim: store.Claim,
    *,
    now: dt.datetime,
    external_status: str,
    message: str | None,
    status: str | None = None,
    pin: str | None = None,
    set_pin: bool = False,
    finished: bool = False,
    note: str | None = None,
) -> bool:
    """Write an outcome to product_orders, only while it still is this claim's dispatch."""
    query = (
        """UPDATE product_orders o SET
            status = COALESCE(%(status)s, o.status),
            "externalStatus" = %(external_status)s,
            "pinCode" = CASE WHEN %(set_pin)s THEN %(pin)s ELSE o."pinCode" END,
            "completedAt" = CASE WHEN %(finished)s THEN %(now)s ELSE o."completedAt" END,
            "approvedAt" = CASE WHEN %(status)s = 'approved' THEN %(now)s ELSE o."approvedAt" END,
            "durationMs" = CASE WHEN %(finished)s AND o."sentAt" IS NOT NULL
                THEN LEAST(GREATEST(EXTRACT(EPOCH FROM (%(now)s - o."sentAt")) * 1000, 0),
                           2147483647)::integer
                ELSE o."durationMs" END,
            "lastSyncAt" = %(now)s,
            "providerMessage" = COALESCE(%(message)s, o."providerMessage"),
            "lastMessage" = COALESCE(left(%(message)s, 250), o."lastMessage"),
            notes = CASE WHEN %(note)s::text IS NULL THEN o.notes ELSE """
        + _NOTES
        + """ END,
            "notesCount" = CASE WHEN %(note)s::text IS NULL THEN o."notesCount"
                ELSE jsonb_array_length("""
        + _NOTES
        + """) END
        WHERE o.id = %(order_id)s AND """
        + _SAME_DISPATCH
    )
    params = _dispatch(claim) | {
        "now": now,
        "now_iso": now.astimezone(dt.UTC).isoformat(),
        "status": status,
        "external_status": external_status,
        "pin": pin,
        "set_pin": set_pin,
        "finished": finished,
        "message": message,
        "note": note,
    }
    return conn.execute(query, params).rowcount == 1


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
