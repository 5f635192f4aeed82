"""The SQL of the outbox: events (written by a trigger, see sql/005_events.sql), their
deliveries to webhooks, and the settings the trigger reads."""

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from ordermon import db
from ordermon.config import notify as notify_config

log = logging.getLogger("ordermon.events")


@dataclasses.dataclass
class DeliveryReport:
    """What one round of webhook deliveries did (all zero when no webhook is configured)."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Delivery:
    event_id: uuid.UUID
    webhook: str
    attempts: int
    type: str
    payload: dict[str, Any]


def configure(conn: db.Connection, notify: notify_config.NotifyConfig) -> None:
    """What the event trigger needs to know of the config, in ordermon_settings: read by
    every transaction on every connection alike, through a transaction pooler too
    (sql/010_pooler_safe_events.sql says why not a session setting). Written only when it
    differs, so concurrent sweeps of one config never queue on the row."""
    wanted = {"channel": notify.pg_channel or "", "pin": notify.include_pin}
    row = conn.execute(
        "SELECT notify_channel AS channel, include_pin AS pin, "
        "updated_at > now() - interval '15 minutes' AS recent FROM ordermon_settings"
    ).fetchone()
    if row is None or {"channel": row["channel"], "pin": row["pin"]} != wanted:
        if row is not None and row["recent"]:
            # One row per database: two configs that disagree take turns, every event
            # following whichever ran last. Said, never silent (the values may be secret-ish:
            # only the keys are named).
            keys = [k for k in _KEYS if row[k] != wanted[k]]
            log.warning(
                "another ordermon config on this database set %s otherwise in the last 15 "
                "minutes: the event trigger follows whichever config ran last; give every "
                "ordermon that uses this database the same notify settings",
                " and ".join(_KEYS[k] for k in keys),
            )
        conn.execute(_CONFIGURE, wanted)


_KEYS = {"pin": "notify.include_pin", "channel": "notify.pg_channel"}


_CONFIGURE = """
INSERT INTO ordermon_settings (notify_channel, include_pin) VALUES (%(channel)s, %(pin)s)
ON CONFLICT (id) DO UPDATE
SET notify_channel = excluded.notify_channel, include_pin = excluded.include_pin,
    updated_at = now()
"""


def register(conn: db.Connection, webhooks: Sequence[notify_config.Webhook]) -> None:
    """Called before a run changes any order: a webhook gets every event committed after the
    first run that had it configured began (not the history before it), even if that run
    dies before it delivers. Its cursor starts at that moment's snapshot: every event the
    snapshot does not see, committed before or after, is its."""
    for webhook in webhooks:
        conn.execute(
            "INSERT INTO ordermon_webhook_cursors (webhook, last_seq, seen) "
            "SELECT %(name)s, coalesce(max(seq), 0), pg_current_snapshot() FROM ordermon_events "
            "ON CONFLICT (webhook) DO NOTHING",
            {"name": webhook.name},
        )


def materialize(conn: db.Connection, webhook: notify_config.Webhook, now: dt.datetime) -> int:
    """Create the pending deliveries of events this webhook has not been given yet: those
    written by a transaction the last look's snapshot did not see (sql/007_event_cursors.sql),
    so an event that commits after a later one was delivered is still delivered, once."""
    register(conn, [webhook])
    with conn.transaction():
        # Locked by a statement of its own, so the look below takes its snapshot after any
        # other look at this webhook has committed (and sees its cursor).
        row = conn.execute(_CURSOR, {"name": webhook.name}).fetchone()
        assert row is not None
        params = {
            "name": webhook.name,
            "now": now,
            "types": list(webhook.events),
            "seen": row["seen"],
            "horizon": row["horizon"],
            "after": row["last_seq"],
        }
        query = _MATERIALIZE_SEEN if row["horizon"] is not None else _MATERIALIZE_BY_SEQ
        # Never a prepared (generic) plan: the index on xact is chosen by the horizon's value.
        created = conn.execute(query, params, prepare=False).fetchone()
    return int(created["n"]) if created else 0


# A snapshot from another cluster's history (a restored dump) is ahead of this one's: such a
# cursor goes by seq instead, like one from before sql/007_event_cursors.sql.
_CURSOR = """
SELECT last_seq, seen::text AS seen,
       CASE WHEN pg_snapshot_xmin(seen) <= pg_snapshot_xmax(pg_current_snapshot())
            THEN pg_snapshot_xmin(seen) END::text AS horizon
FROM ordermon_webhook_cursors WHERE webhook = %(name)s FOR UPDATE
"""
_MATERIALIZE = """
WITH made AS (
    INSERT INTO ordermon_deliveries (event_id, webhook, next_attempt_at)
    SELECT e.id, %(name)s, %(now)s FROM ordermon_events e
    WHERE e.type = ANY(%(types)s) AND {unseen}
    -- The anti-join on what was already materialized (by a look that raced this one, or
    -- by seq): one probe of the primary key per candidate, however many deliveries exist.
    ON CONFLICT (event_id, webhook) DO NOTHING
    RETURNING 1
), moved AS (
    UPDATE ordermon_webhook_cursors
    SET seen = pg_current_snapshot(),
        last_seq = (SELECT coalesce(max(seq), 0) FROM ordermon_events)
    WHERE webhook = %(name)s
)
SELECT count(*) AS n FROM made
"""
_MATERIALIZE_SEEN = _MATERIALIZE.replace(
    "{unseen}",
    "e.xact >= %(horizon)s::xid8 AND NOT pg_visible_in_snapshot(e.xact, %(seen)s::pg_snapshot)",
)
_MATERIALIZE_BY_SEQ = _MATERIALIZE.replace("{unseen}", "e.seq > %(after)s")


def claim(
    conn: db.Connection,
    webhooks: Sequence[str],
    limit: int,
    now: dt.datetime,
    lease_end: dt.datetime,
) -> list[Delivery]:
    """Due deliveries, oldest first, never one whose order has an earlier event still pending
    for the same webhook (the events of one order arrive in order)."""
    rows = conn.execute(
        """WITH due AS (
               SELECT d.event_id, d.webhook FROM ordermon_deliveries d
               JOIN ordermon_events e ON e.id = d.event_id
               WHERE d.state = 'pending' AND d.next_attempt_at <= %(now)s
                 AND d.webhook = ANY(%(webhooks)s)
                 AND NOT EXISTS (
                     SELECT 1 FROM ordermon_deliveries d2
                     JOIN ordermon_events e2 ON e2.id = d2.event_id
                     WHERE d2.webhook = d.webhook AND d2.state = 'pending'
                       AND e2.order_id = e.order_id AND e2.seq < e.seq)
               ORDER BY e.seq LIMIT %(limit)s
               FOR UPDATE OF d SKIP LOCKED)
           UPDATE ordermon_deliveries d
           SET attempts = d.attempts + 1, next_attempt_at = %(lease_end)s
           FROM due, ordermon_events e
           WHERE d.event_id = due.event_id AND d.webhook = due.webhook AND e.id = d.event_id
           RETURNING d.event_id, d.webhook, d.attempts, e.type, e.payload, e.seq""",
        {"now": now, "webhooks": list(webhooks), "limit": limit, "lease_end": lease_end},
    )
    ordered = sorted(rows, key=lambda r: r["seq"])
    return [
        Delivery(r["event_id"], r["webhook"], r["attempts"], r["type"], r["payload"])
        for r in ordered
    ]


def finish(
    conn: db.Connection,
    delivery: Delivery,
    *,
    state: str,
    status: int | None,
    error: str | None,
    next_attempt_at: dt.datetime | None,
    now: dt.datetime,
) -> None:
    conn.execute(
        """UPDATE ordermon_deliveries SET state = %(state)s, last_status = %(status)s,
               last_error = %(error)s,
               next_attempt_at = coalesce(%(next)s, next_attempt_at),
               delivered_at = CASE WHEN %(state)s = 'delivered' THEN %(now)s END
           WHERE event_id = %(event)s AND webhook = %(webhook)s AND state = 'pending'""",
        {
            "state": state,
            "status": status,
            "error": error,
            "next": next_attempt_at,
            "now": now,
            "event": delivery.event_id,
            "webhook": delivery.webhook,
        },
    )


def events(conn: db.Connection, *, dead_only: bool, limit: int) -> list[dict[str, Any]]:
    return list(
        conn.execute(
            """SELECT e.id, e.type, e.order_id, e.created_at, d.webhook, d.state, d.attempts,
                      d.last_status, d.last_error, d.delivered_at, d.next_attempt_at
               FROM ordermon_events e
               LEFT JOIN ordermon_deliveries d ON d.event_id = e.id
               WHERE NOT %(dead)s OR d.state = 'dead'
               ORDER BY e.seq DESC LIMIT %(limit)s""",
            {"dead": dead_only, "limit": limit},
        )
    )


def redeliver(conn: db.Connection, event_ids: Sequence[uuid.UUID] | None, now: dt.datetime) -> int:
    """Back to pending with fresh attempts: the given events' deliveries, or every dead one."""
    cursor = conn.execute(
        """UPDATE ordermon_deliveries SET state = 'pending', attempts = 0,
               next_attempt_at = %(now)s, delivered_at = NULL
           WHERE (%(ids)b::uuid[] IS NULL AND state = 'dead')
              OR event_id = ANY(%(ids)b::uuid[])""",
        {"ids": list(event_ids) if event_ids is not None else None, "now": now},
    )
    return max(cursor.rowcount, 0)


def unknown(conn: db.Connection, event_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Those of ``event_ids`` that name no event."""
    rows = conn.execute(
        """SELECT v.id FROM unnest(%(ids)b::uuid[]) WITH ORDINALITY AS v(id, n)
           WHERE NOT EXISTS (SELECT 1 FROM ordermon_events e WHERE e.id = v.id) ORDER BY v.n""",
        {"ids": list(event_ids)},
    )
    return [row["id"] for row in rows]


def dead_count(conn: db.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM ordermon_deliveries WHERE state = 'dead'"
    ).fetchone()
    return int(row["n"]) if row else 0
