"""Provider pauses (the circuit breaker), kept in PostgreSQL because the CLI is stateless.

A run of transport or credential failures pauses a provider for a cool-down that doubles while
it stays down; its orders wait without spending attempts. When the cool-down ends, one sweep
sends one probe: a good answer closes the breaker, a failure pauses it again for longer. A 429
(or a 503 with Retry-After) holds the provider until its Retry-After without counting as a
failure. No pause or hold lasts longer than pause.max_cooldown: then a fresh request goes out.
"""

import dataclasses
import datetime as dt

from ordermon import db
from ordermon.config import providers as provider_config


@dataclasses.dataclass(frozen=True)
class State:
    provider_id: str
    failures: int
    pauses: int
    paused_until: dt.datetime | None
    reason: str | None

    def paused(self, now: dt.datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def needs_probe(self, now: dt.datetime) -> bool:
        return self.pauses > 0 and not self.paused(now)


def load(conn: db.Connection, provider_ids: list[str]) -> dict[str, State]:
    rows = conn.execute(
        "SELECT provider_id, failures, pauses, paused_until, reason "
        "FROM ordermon_provider_state WHERE provider_id = ANY(%(ids)s)",
        {"ids": provider_ids},
    )
    return {row["provider_id"]: State(**row) for row in rows}


def start_probe(
    conn: db.Connection, provider_id: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Whether this sweep may send the probe (only one sweep at a time does)."""
    row = conn.execute(
        """UPDATE ordermon_provider_state SET probe_until = %(until)s
           WHERE provider_id = %(id)s AND pauses > 0
             AND (paused_until IS NULL OR paused_until <= %(now)s)
             AND (probe_until IS NULL OR probe_until <= %(now)s)
           RETURNING provider_id""",
        {"id": provider_id, "now": now, "until": until},
    ).fetchone()
    return row is not None


def failed(
    conn: db.Connection,
    provider: provider_config.ProviderConfig,
    reason: str,
    now: dt.datetime,
    *,
    probe: bool = False,
) -> dt.datetime | None:
    """Count a transport or credential failure; return the pause's end if it paused now."""
    row = conn.execute(
        """INSERT INTO ordermon_provider_state
               (provider_id, failures, last_trouble, last_trouble_at)
           VALUES (%(id)s, 1, %(reason)s, %(now)s)
           ON CONFLICT (provider_id) DO UPDATE
           SET failures = ordermon_provider_state.failures + 1,
               last_trouble = %(reason)s, last_trouble_at = %(now)s
           RETURNING failures, pauses, paused_until""",
        {"id": provider.id, "reason": reason, "now": now},
    ).fetchone()
    assert row is not None
    already = row["paused_until"] is not None and row["paused_until"] > now
    if already or not (probe or row["failures"] >= provider.pause.after_failures):
        return None
    until = now + provider.pause.cooldown_for(row["pauses"])
    conn.execute(
        """UPDATE ordermon_provider_state
           SET paused_until = %(until)s, pauses = pauses + 1, failures = 0,
               probe_until = NULL, reason = %(reason)s
           WHERE provider_id = %(id)s""",
        {"id": provider.id, "until": until, "reason": reason},
    )
    return until


def held(conn: db.Connection, provider_id: str, until: dt.datetime, reason: str) -> None:
    """The provider asked for a pause (429 Retry-After): no sends until then, no failure."""
    conn.execute(
        """INSERT INTO ordermon_provider_state (provider_id, paused_until, reason)
           VALUES (%(id)s, %(until)s, %(reason)s)
           ON CONFLICT (provider_id) DO UPDATE
           SET paused_until = GREATEST(COALESCE(ordermon_provider_state.paused_until,
                                                %(until)s), %(until)s),
               reason = %(reason)s""",
        {"id": provider_id, "until": until, "reason": reason},
    )


def shorten(conn: db.Connection, provider_id: str, latest: dt.datetime) -> None:
    """End a pause or hold no later than ``latest`` (one stored by an older version, or
    before the config's pause.max_cooldown was lowered)."""
    conn.execute(
        """UPDATE ordermon_provider_state SET paused_until = %(latest)s
           WHERE provider_id = %(id)s AND paused_until > %(latest)s""",
        {"id": provider_id, "latest": latest},
    )


def recovered(conn: db.Connection, provider_id: str, now: dt.datetime) -> None:
    """A good answer: close the breaker and forget the failures."""
    conn.execute(
        """INSERT INTO ordermon_provider_state (provider_id, last_success_at)
           VALUES (%(id)s, %(now)s)
           ON CONFLICT (provider_id) DO UPDATE
           SET failures = 0, pauses = 0, probe_until = NULL, last_success_at = %(now)s,
               paused_until = CASE WHEN ordermon_provider_state.reason = 'throttled'
                                   THEN ordermon_provider_state.paused_until END,
               reason = CASE WHEN ordermon_provider_state.reason = 'throttled'
                             THEN ordermon_provider_state.reason END""",
        {"id": provider_id, "now": now},
    )
