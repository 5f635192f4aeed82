"""`ordermon show ORDER_ID`: one order as an operator needs it at 3 a.m.: the columns that
matter, its schedule, and every attempt.

Each attempt row says whether it counted toward the schedule (the enrolment's ``attempts``):
only a check the provider answered counts; one the provider's trouble spoilt (no reply, 5xx,
refused credentials, 429) does not, nor one whose claim another sweep had taken over. Each
enrolment sums its rows that way, so its header and its rows cannot disagree."""

import datetime as dt
import decimal
import uuid
from typing import Any

from ordermon import config, db, errors
from ordermon.config import human

_ORDER = """
SELECT id, "orderNo" AS order_no, status, "externalStatus" AS external_status,
       "providerId" AS provider_id, provider_referans, "externalOrderId" AS external_order_id,
       "sentAt" AS sent_at, "lastSyncAt" AS last_sync_at, "completedAt" AS completed_at,
       "lastMessage" AS last_message, "pinCode" IS NOT NULL AS pin_stored,
       "sellPriceAmount" AS amount, "sellPriceCurrency" AS currency, "userId" AS user_id
FROM product_orders WHERE id = %(id)s
"""
_ENROLMENTS = """
SELECT id, provider_id, reference, sent_at, state, attempts, next_check_at, deadline,
       claimed_until, last_checked_at, last_outcome, last_message, enrolled_at, finished_at,
       next_check_why
FROM ordermon_enrolments WHERE order_id = %(id)s ORDER BY id
"""
_ATTEMPTS = """
SELECT enrolment_id, checked_at, provider_id, latency_ms, http_status, outcome, applied,
       counted, trouble, message, excerpt
FROM ordermon_attempts WHERE order_id = %(id)s ORDER BY checked_at, id
"""
_REFUND = "SELECT amount, refunded_at FROM ordermon_refunds WHERE order_id = %(id)s"


def gather(
    conn: db.Connection, cfg: config.Config, order_id: str, now: dt.datetime
) -> dict[str, Any]:
    try:
        key = uuid.UUID(order_id)
    except ValueError:
        raise errors.UsageError(f"ORDER_ID: {order_id!r} is not an order id (a UUID)") from None
    order = conn.execute(_ORDER, {"id": key}).fetchone()
    if order is None:
        raise errors.OrderError(f"order {order_id}: no such order in product_orders")
    tz = cfg.timezone
    names = {p.id: p.name for p in cfg.providers}
    provider = cfg.provider_by_id(order["provider_id"] or "")
    enrolments = [_shown(dict(row), tz) for row in conn.execute(_ENROLMENTS, {"id": key})]
    for enrolment in enrolments:
        enrolment["provider"] = names.get(enrolment.pop("provider_id"), "not configured")
    attempts = [_shown(dict(row), tz) for row in conn.execute(_ATTEMPTS, {"id": key})]
    for attempt in attempts:
        attempt["provider"] = names.get(attempt.pop("provider_id"), "not configured")
        attempt["counts"] = _counts(attempt)
    for enrolment in enrolments:
        _summarise(enrolment, [a for a in attempts if a["enrolment_id"] == enrolment["id"]])
    refund = conn.execute(_REFUND, {"id": key}).fetchone()
    return {
        "order": _shown(dict(order), tz)
        | {
            "provider": provider.name if provider else None,
            "monitored": provider is not None,
        },
        "enrolments": enrolments,
        "attempts": attempts,
        "refund": _shown(dict(refund), tz) if refund else None,
        "now": human.iso(now, tz),
    }


def _shown(row: dict[str, Any], tz: str) -> dict[str, Any]:
    """Times in the configured zone, ids and amounts as strings: ready for JSON or a table."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dt.datetime):
            out[key] = human.iso(value, tz)
        elif isinstance(value, uuid.UUID | decimal.Decimal):
            out[key] = str(value)
        else:
            out[key] = value
    return out


COUNTED, TROUBLE, TAKEN_OVER, UNKNOWN = "counted", "provider trouble", "taken over", "unknown"
# An answer ordermon could not write (a grant missing): it spent nothing, and was no
# provider's doing. Its row's trouble says so (sweep/unrecorded.py).
NOT_RECORDED = "not recorded"


def _counts(attempt: dict[str, Any]) -> str:
    """How an attempt weighed on the schedule: counted; not, for the provider's trouble or
    because another sweep had taken the order over; or unknown (recorded before ordermon
    kept it, sql/008)."""
    if attempt["counted"] is None:
        return UNKNOWN
    if attempt["counted"]:
        return COUNTED
    if attempt["trouble"] == "unrecorded":  # sweep/unrecorded.UNRECORDED
        return NOT_RECORDED
    return TROUBLE if attempt["trouble"] else TAKEN_OVER


def trouble_label(attempt: dict[str, Any]) -> str:
    """What went wrong with the provider, in a few words: ``HTTP 500``, ``no reply``,
    ``credentials refused, HTTP 200``, ``throttled, HTTP 429``."""
    status = f"HTTP {attempt['http_status']}" if attempt["http_status"] else "no reply"
    kind = {"credentials": "credentials refused", "throttled": "throttled"}
    return f"{kind[attempt['trouble']]}, {status}" if attempt["trouble"] in kind else status


def _summarise(enrolment: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The enrolment's checks by how they counted, and no next check once it is finished."""
    enrolment["checks"] = len(rows)
    for kind in (COUNTED, TROUBLE, TAKEN_OVER, UNKNOWN, NOT_RECORDED):
        enrolment[kind.replace(" ", "_")] = sum(1 for row in rows if row["counts"] == kind)
    troubles: dict[str, int] = {}
    for row in rows:
        if row["counts"] == TROUBLE:
            label = trouble_label(row)
            troubles[label] = troubles.get(label, 0) + 1
    enrolment["troubles"] = troubles
    if enrolment["state"] != "waiting":
        enrolment["next_check_at"] = enrolment["claimed_until"] = None
        enrolment["next_check_why"] = None
