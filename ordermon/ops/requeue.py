"""`ordermon requeue`: give expired orders, and orders the `hold` policy left for a person, a
fresh schedule: attempts from zero, a new deadline from now, checked at the next sweep."""

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence

from ordermon import config, db, errors
from ordermon.config import human

_CANDIDATE = """
SELECT e.id, e.order_id, e.provider_id, e.state, e.sent_at, o.status,
       o."externalStatus" AS external_status, o."providerId" AS order_provider,
       o."sentAt" AS order_sent_at
FROM ordermon_enrolments e
LEFT JOIN product_orders o ON o.id = e.order_id
WHERE e.id = (SELECT max(id) FROM ordermon_enrolments WHERE order_id = %(id)s)
"""
_EXPIRED = """
SELECT e.order_id FROM ordermon_enrolments e
JOIN product_orders o ON o.id = e.order_id
WHERE e.state = 'expired' AND o.status = 'pending' AND o."sentAt" = e.sent_at
  AND o."providerId" = e.provider_id
  AND o."externalStatus" IN ('sent', 'queued', 'processing')
  AND e.provider_id = ANY(%(providers)s)
  AND e.id = (SELECT max(id) FROM ordermon_enrolments x WHERE x.order_id = e.order_id)
ORDER BY e.sent_at
"""
_REVIVE = """
UPDATE ordermon_enrolments SET state = 'waiting', attempts = 0, next_check_at = %(now)s,
    deadline = %(deadline)s, claim_token = NULL, claimed_until = NULL, finished_at = NULL,
    last_outcome = 'requeued', last_message = 'requeued by an operator',
    next_check_why = 'requeued: the next sweep'
WHERE id = %(id)s AND state IN ('expired', 'held')
"""
# A held order carries externalStatus 'failed' (ordermon wrote it); watching it again means
# putting back the status ordermon watches, only while it is still that held order.
_UNHOLD = """
UPDATE product_orders SET "externalStatus" = 'processing'
WHERE id = %(id)s AND status = 'pending' AND "externalStatus" = 'failed'
  AND "providerId" = %(provider_id)s AND "sentAt" = %(sent_at)s
"""


@dataclasses.dataclass(frozen=True)
class Decision:
    order_id: str
    requeued: bool
    why: str
    deadline: str | None = None  # ISO-8601 in the configured zone, once requeued


def run(
    conn: db.Connection,
    cfg: config.Config,
    order_ids: Sequence[str],
    *,
    expired: bool,
    provider_name: str | None,
    dry_run: bool,
    now: dt.datetime,
) -> list[Decision]:
    if expired:
        ids = _expired(conn, cfg, provider_name)
    elif provider_name:
        raise errors.UsageError("--provider: only with --expired")
    else:
        ids = [_uuid(order_id) for order_id in order_ids]
    if not ids:
        return []
    return [_one(conn, cfg, order_id, dry_run, now) for order_id in ids]


def _one(
    conn: db.Connection, cfg: config.Config, order_id: uuid.UUID, dry_run: bool, now: dt.datetime
) -> Decision:
    shown = str(order_id)
    with conn.transaction():
        row = conn.execute(_CANDIDATE + " FOR UPDATE OF e", {"id": order_id}).fetchone()
        if row is None:
            return Decision(shown, False, "ordermon has never watched this order")
        if row["status"] is None:
            return Decision(shown, False, "no such order in product_orders")
        if row["status"] != "pending":
            return Decision(shown, False, f"the order is {row['status']}, not pending")
        if row["state"] not in ("expired", "held"):
            return Decision(
                shown, False, f"ordermon's enrolment is {row['state']}, not expired or held"
            )
        if (row["order_provider"], row["order_sent_at"]) != (row["provider_id"], row["sent_at"]):
            return Decision(
                shown, False, "the shop sent the order again; the new dispatch is watched"
            )
        provider = cfg.provider_by_id(row["provider_id"])
        if provider is None:
            return Decision(shown, False, f"its provider {row['provider_id']!r} is not configured")
        if dry_run:
            return Decision(shown, True, f"would requeue ({row['state']})")
        if row["state"] == "held":
            conn.execute(
                _UNHOLD,
                {"id": order_id, "provider_id": row["provider_id"], "sent_at": row["sent_at"]},
            )
        deadline = now + provider.policy.give_up_after
        conn.execute(_REVIVE, {"id": row["id"], "now": now, "deadline": deadline})
        return Decision(
            shown,
            True,
            f"requeued ({row['state']}); new deadline {human.moment(deadline, cfg.timezone)}",
            human.iso(deadline, cfg.timezone),
        )


def _expired(conn: db.Connection, cfg: config.Config, provider_name: str | None) -> list[uuid.UUID]:
    chosen = list(cfg.providers)
    if provider_name:
        provider = cfg.provider_by_name(provider_name)
        if provider is None:
            raise errors.UsageError(f"--provider {provider_name}: no such provider")
        chosen = [provider]
    rows = conn.execute(_EXPIRED, {"providers": [p.id for p in chosen]})
    return [row["order_id"] for row in rows]


def _uuid(order_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(order_id)
    except ValueError:
        raise errors.UsageError(f"ORDER_ID: {order_id!r} is not an order id (a UUID)") from None
