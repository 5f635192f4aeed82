"""Record what a provider said about a claimed order: the one place that touches money.

Each answer is recorded in one transaction: the claim is still ours (else nothing changes), the
order is still the pending dispatch we asked about (else superseded: nothing changes), then the
order, the refund, ordermon's own state and the attempt row commit together or not at all.
"""

import dataclasses
import datetime as dt
from decimal import Decimal

import psycopg.errors

from ordermon import db, schedule, shop, store
from ordermon.providers import base

# What `record` can end in; the sweep counts these.
COMPLETED, REFUNDED, REJECTED, HELD = "completed", "refunded", "rejected", "held"
PROCESSING, ERROR, EXPIRED, SUPERSEDED = "processing", "error", "expired", "superseded"
FAILED_RESULTS = (REFUNDED, REJECTED, HELD)
_RETRIES = 3


@dataclasses.dataclass(frozen=True)
class Context:
    """What recording needs beyond the answer itself."""

    provider_name: str
    policy: schedule.Policy
    on_failed: str
    run_id: int | None
    now: dt.datetime
    jitter_draw: float


def record(conn: db.Connection, claim: store.Claim, check: base.Check, ctx: Context) -> str:
    """Apply ``check`` to the order and return what happened (one of the names above)."""
    return record_many(conn, [(claim, check, ctx)])[0]


def record_many(
    conn: db.Connection, items: list[tuple[store.Claim, base.Check, Context]]
) -> list[str]:
    """Apply several answers in one transaction: each order keeps every guard of its own, and
    the batch shares one commit (one WAL flush instead of one per order)."""
    for attempt in range(_RETRIES):
        try:
            with conn.transaction():
                return [_apply_and_log(conn, claim, check, ctx) for claim, check, ctx in items]
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            # A shop transaction locked the same rows in another order: nothing committed,
            # so doing it all again is safe.
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _apply_and_log(conn: db.Connection, claim: store.Claim, check: base.Check, ctx: Context) -> str:
    result = _apply(conn, claim, check, ctx)
    if check.sent:  # held back, nothing was asked: no attempt to show
        store.insert_attempt(
            conn,
            claim,
            run_id=ctx.run_id,
            checked_at=ctx.now,
            outcome=str(check.answer.outcome),
            applied=result,
            latency_ms=check.latency_ms,
            http_status=check.http_status,
            message=check.answer.message,
            excerpt=check.excerpt,
        )
    return result


def _apply(conn: db.Connection, claim: store.Claim, check: base.Check, ctx: Context) -> str:
    answer = check.answer
    if not store.lock_claim(conn, claim):
        return SUPERSEDED  # our lease ran out and another run took the order over
    retry_after = dt.timedelta(seconds=check.retry_after) if check.retry_after else None
    if check.trouble is not None:
        store.release_claim(
            conn,
            claim,
            state="waiting",
            outcome=ERROR,
            message=answer.message,
            next_check_at=schedule.after_provider_trouble(
                ctx.now, claim.attempts - 1, ctx.policy, ctx.jitter_draw, retry_after
            ),
            now=ctx.now,
            provider_trouble=True,
        )
        return ERROR
    if answer.outcome is base.Outcome.COMPLETED or answer.outcome is base.Outcome.FAILED:
        order = shop.lock_order(conn, claim)
        if order is None:
            return _supersede(conn, claim, ctx, "the order was decided or re-sent meanwhile")
        if answer.outcome is base.Outcome.COMPLETED:
            return _complete(conn, claim, answer, ctx)
        return _fail(conn, claim, order, answer, ctx)
    if answer.outcome is base.Outcome.PROCESSING and not shop.write_order(
        conn, claim, now=ctx.now, external_status="processing", message=answer.message
    ):
        return _supersede(conn, claim, ctx, "the order was decided or re-sent meanwhile")
    next_check = schedule.next_check_at(
        ctx.now, claim.attempts, claim.deadline, ctx.policy, ctx.jitter_draw, retry_after
    )
    store.release_claim(
        conn,
        claim,
        state="waiting" if next_check else "expired",
        outcome=str(answer.outcome) if next_check else EXPIRED,
        message=answer.message,
        next_check_at=next_check,
        now=ctx.now,
    )
    if next_check is None:
        return EXPIRED
    return PROCESSING if answer.outcome is base.Outcome.PROCESSING else ERROR


def _complete(conn: db.Connection, claim: store.Claim, answer: base.Answer, ctx: Context) -> str:
    note = f"{ctx.provider_name}: delivered"
    note += " (PIN stored)" if answer.pin else ""
    note += f": {answer.message}" if answer.message else ""
    shop.write_order(
        conn,
        claim,
        now=ctx.now,
        status="approved",
        external_status="done",
        pin=answer.pin,
        set_pin=True,
        finished=True,
        message=answer.message,
        note=note,
    )
    _finish(conn, claim, "done", COMPLETED, answer.message, ctx)
    return COMPLETED


def _fail(
    conn: db.Connection,
    claim: store.Claim,
    order: shop.LockedOrder,
    answer: base.Answer,
    ctx: Context,
) -> str:
    said = f"{ctx.provider_name}: refused" + (f": {answer.message}" if answer.message else "")
    policy, why = ctx.on_failed, ""
    amount = Decimal(order.amount or 0)
    if policy == "refund" and order.user_id is None:
        policy, why = "hold", "the order has no customer to refund"
    if policy == "refund" and amount <= 0:
        policy, why = "reject", "nothing was charged"
    if policy == "refund":
        description = (
            f"Refund for order {order.order_no or claim.order_id}: "
            f"rejected by provider {ctx.provider_name}"
        )
        assert order.user_id is not None
        if not shop.insert_refund(conn, claim, order.user_id, amount, description, ctx.now):
            policy, why = "hold", "this order was refunded once already"
    if policy == "hold":
        note = f"{said}; left pending for a person" + (f" ({why})" if why else "")
        shop.write_order(
            conn,
            claim,
            now=ctx.now,
            external_status="failed",
            message=answer.message,
            note=note,
        )
        _finish(conn, claim, "held", HELD, answer.message, ctx)
        return HELD
    if policy == "refund":
        note = f"{said}; refunded {amount} {order.currency}"
    else:
        note = f"{said}; not refunded ({why or 'on_failed: reject'})"
    shop.write_order(
        conn,
        claim,
        now=ctx.now,
        status="rejected",
        external_status="failed",
        finished=True,
        message=answer.message,
        note=note,
    )
    result = REFUNDED if policy == "refund" else REJECTED
    _finish(conn, claim, "done", result, answer.message, ctx)
    return result


def _supersede(conn: db.Connection, claim: store.Claim, ctx: Context, why: str) -> str:
    _finish(conn, claim, "superseded", SUPERSEDED, why, ctx)
    return SUPERSEDED


def _finish(
    conn: db.Connection,
    claim: store.Claim,
    state: str,
    outcome: str,
    message: str | None,
    ctx: Context,
) -> None:
    store.release_claim(
        conn,
        claim,
        state=state,
        outcome=outcome,
        message=message,
        next_check_at=None,
        now=ctx.now,
    )
