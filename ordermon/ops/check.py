"""`ordermon check ORDER_ID`: ask about one order now, whatever its schedule, and record the
answer with exactly the rules of a sweep."""

import dataclasses
import datetime as dt
import os
import random
import socket
import uuid
from typing import Any

from ordermon import config, db, errors, providers
from ordermon.config import human
from ordermon.config import providers as provider_config
from ordermon.events import outbox
from ordermon.providers import base
from ordermon.sweep import enrolment, lanes, models, outcome, runs, store, sweep


@dataclasses.dataclass(frozen=True)
class Result:
    order_id: str
    provider: str
    reference: str
    check: base.Check
    applied: str | None  # None for --dry-run

    def as_dict(self) -> dict[str, Any]:
        answer = self.check.answer
        return {
            "order_id": self.order_id,
            "provider": self.provider,
            "reference": self.reference,
            "outcome": str(answer.outcome),
            "pin": answer.pin,
            "message": answer.message,
            "http_status": self.check.http_status,
            "latency_ms": self.check.latency_ms,
            "excerpt": self.check.excerpt,
            "applied": self.applied,
            "dry_run": self.applied is None,
        }


def run(
    conn: db.Connection,
    cfg: config.Config,
    order_id: str,
    *,
    dry_run: bool = False,
    clock: sweep.Clock = sweep.utc_now,
) -> Result:
    try:
        order_uuid = uuid.UUID(order_id)
    except ValueError:
        raise errors.UsageError(f"ORDER_ID: {order_id!r} is not an order id (a UUID)") from None
    sweep.require_schema(conn)
    row = conn.execute(
        """SELECT status, "externalStatus" AS external_status, "providerId" AS provider_id,
                  "sentAt" AS sent_at,
                  provider_referans, "externalOrderId" AS external_order_id
           FROM product_orders WHERE id = %(id)s""",
        {"id": order_uuid},
    ).fetchone()
    if row is None:
        raise errors.OrderError(f"order {order_id}: no such order in product_orders")
    if row["status"] != "pending":
        raise errors.OrderError(
            f"order {order_id} is {row['status']}, not pending: nothing to check"
        )
    provider = cfg.provider_by_id(row["provider_id"] or "")
    if provider is None and not row["provider_id"]:
        raise errors.OrderError(f'order {order_id} names no provider ("providerId" is empty)')
    if provider is None:
        raise errors.OrderError(
            f"order {order_id}: its provider {row['provider_id']!r} is not in the configuration"
        )
    if row["external_status"] not in store.MONITORED_EXTERNAL:
        raise errors.OrderError(
            f"order {order_id}: externalStatus is {row['external_status']!r}; ordermon checks "
            f"only orders that are {', '.join(store.MONITORED_EXTERNAL)}"
        )
    if row["sent_at"] is None:
        raise errors.OrderError(f"order {order_id} has no sentAt: it was never dispatched")
    reference = _reference(provider.kind, row, order_uuid)
    if reference is None:
        raise errors.OrderError(
            f"order {order_id} has no provider_referans, so {provider.name} cannot be asked"
        )
    adapter = providers.build(provider)
    try:
        if dry_run:
            answer = adapter.check([reference])[reference]
            return Result(order_id, provider.name, reference, answer, None)
        return _check_and_record(conn, cfg, provider, order_uuid, reference, adapter, clock)
    finally:
        adapter.close()


def _check_and_record(
    conn: db.Connection,
    cfg: config.Config,
    provider: provider_config.ProviderConfig,
    order_id: uuid.UUID,
    reference: str,
    adapter: base.Provider,
    clock: sweep.Clock,
) -> Result:
    # Only a check that records: the settings are what the event trigger of every writer
    # reads (a dry run with another config would change every later event's PIN and channel).
    outbox.configure(conn, cfg.notify)
    outbox.register(conn, cfg.notify.webhooks)
    provider_rules = sweep.rules([provider])
    now = clock()
    run_id = runs.start_run(conn, "check", socket.gethostname(), os.getpid(), now)
    token = uuid.uuid4()
    with conn.transaction():
        # The sweep's lock: enrolling beside a sweep's enrolment could retire what it enrolled.
        enrolment.enrol_lock(conn)
        enrolment.enrol(conn, provider_rules, order_id=order_id)
        waiting = conn.execute(
            "SELECT id, claimed_until FROM ordermon_enrolments "
            "WHERE order_id = %(id)s AND state = 'waiting'",
            {"id": order_id},
        ).fetchone()
        if waiting is None:
            last = conn.execute(
                "SELECT state FROM ordermon_enrolments WHERE order_id = %(id)s "
                "ORDER BY id DESC LIMIT 1",
                {"id": order_id},
            ).fetchone()
            state = last["state"] if last else "unknown"
            raise errors.OrderError(
                f"order {order_id}: ordermon stopped watching this dispatch ({state}); "
                "it checks it again only when the shop sends it again"
            )
        claims = store.claim(
            conn, provider_rules, 1, token, now, now + cfg.sweep.lease, waiting["id"]
        )
    if not claims:
        until = waiting["claimed_until"]
        raise errors.OrderError(
            f"order {order_id} is being checked by a sweep right now (claimed until "
            f"{human.moment(until, cfg.timezone)}); try again after that"
            if isinstance(until, dt.datetime)
            else f"order {order_id} is being checked by a sweep right now; try again shortly"
        )
    claim = claims[0]
    check = adapter.check([reference])[reference]
    # A learned provider's stored plan places the next check as in a sweep (not refreshed:
    # one order's check is no reason to read the provider's history).
    choice = models.choices(conn, [provider], now, refreshing=False).get(provider.id)
    ctx = outcome.Context(
        provider.name,
        provider.policy,
        cfg.on_failed,
        run_id,
        clock(),
        random.uniform(-1, 1),
        longest_wait=lanes.longest_hold(provider),  # a Retry-After holds as in a sweep
        choice=choice,
    )
    applied = outcome.record(conn, claim, check, ctx)
    counts = {"claimed": 1, applied if applied in runs.RUN_COUNTS else "failed": 1}
    runs.finish_run(conn, run_id, counts, None, 0, clock())
    return Result(str(order_id), provider.name, reference, check, applied)


def _reference(kind: str, row: dict[str, Any], order_id: uuid.UUID) -> str | None:
    """The same rule as the SQL function ordermon_reference()."""
    rule = providers.reference_rule(kind)
    if rule == "order_id":
        return str(order_id)
    if row["provider_referans"]:
        return str(row["provider_referans"])
    if rule == "provider_referans_or_external" and row["external_order_id"]:
        return str(row["external_order_id"])
    return None
