"""Record what providers said about claimed orders: the one place that touches money.

Answers are recorded in one transaction per batch, and every order keeps its own guards: the
claim is still this run's (else nothing changes), the order is still the pending dispatch that
was asked about (else superseded: nothing changes), then the order, the refund, ordermon's own
state, the event (by trigger) and the attempt row commit together or not at all. Completed,
processing and error answers are written with one statement per kind for the whole batch;
refusals, which move money, one order at a time.

A batch that cannot be written (an answer PostgreSQL refuses, a bug) is written again order by
order, so one order's bad answer is that order's `error`, never the batch's or the sweep's. Only
a database that cannot be used at all stops recording.
"""

import dataclasses
import datetime as dt
from decimal import Decimal

import psycopg.errors

from ordermon import db
from ordermon.providers import base
from ordermon.sweep import models, schedule, shop, store, unrecorded

# What recording can end in; the sweep counts these.
COMPLETED, REFUNDED, REJECTED, HELD = "completed", "refunded", "rejected", "held"
PROCESSING, ERROR, EXPIRED, SUPERSEDED = "processing", "error", "expired", "superseded"
FAILED_RESULTS = (REFUNDED, REJECTED, HELD)
CHANGED_MEANWHILE = "the order was decided or re-sent meanwhile"
_RETRIES = 3

Item = tuple[store.Claim, base.Check, "Context"]


@dataclasses.dataclass(frozen=True)
class Context:
    """What recording needs beyond the answer itself."""

    provider_name: str
    policy: schedule.Policy
    on_failed: str
    run_id: int | None
    now: dt.datetime
    jitter_draw: float
    # The longest a provider's wait (Retry-After) may push a check back (pause.max_cooldown
    # for a sweep); never past give_up_after.
    longest_wait: dt.timedelta | None = None
    # A learned provider's plan (or its reason for backoff); None: schedule.mode backoff.
    choice: models.Choice | None = None
    explore_draw: float = 1.0  # in [0, 1): under schedule.explore, a learned pause is halved


def record(conn: db.Connection, claim: store.Claim, check: base.Check, ctx: Context) -> str:
    """Apply one answer and return what happened (one of the names above)."""
    return record_many(conn, [(claim, check, ctx)])[0]


def record_many(
    conn: db.Connection,
    items: list[Item],
    failures: list[unrecorded.Unrecorded] | None = None,
) -> list[str]:
    """Apply several answers in one transaction (one commit for the batch). When the batch
    cannot be written, each answer is written on its own; one whose own write fails becomes an
    error of that order alone (told in ``failures``). Raises only when the database itself
    cannot be used."""
    try:
        return _apply(conn, items)
    except Exception as exc:
        if unrecorded.unusable(conn, exc):
            _told_unrecorded(conn, items, exc)
            raise
        if len(items) == 1:
            return [_record_failure(conn, 0, items[0], exc, failures)]
    results = []
    for index, item in enumerate(items):
        try:
            results.extend(_apply(conn, [item]))
        except Exception as exc:
            if unrecorded.unusable(conn, exc):
                _told_unrecorded(conn, items[index:], exc)
                raise
            results.append(_record_failure(conn, index, item, exc, failures))
    return results


def _told_unrecorded(conn: db.Connection, items: list[Item], exc: Exception) -> None:
    """The database refused these answers for a reason no order can help (a grant missing):
    the sweep stops, but first each is an error attempt that spends nothing and its claim is
    released, so `show` says why and the next sweep asks again on schedule."""
    unrecorded.write_errors(
        conn,
        [
            (claim, check, ctx.run_id, ctx.now, _after_trouble(claim, ctx))
            for claim, check, ctx in items
        ],
        exc,
    )


def _after_trouble(claim: store.Claim, ctx: Context) -> dt.datetime:
    return schedule.after_provider_trouble(ctx.now, claim.attempts - 1, ctx.policy, ctx.jitter_draw)


def _apply(conn: db.Connection, items: list[Item]) -> list[str]:
    for attempt in range(_RETRIES):
        try:
            with conn.transaction():
                return _Batch(conn, items).apply()
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            # A shop transaction locked the same rows in another order: nothing committed,
            # so doing it all again is safe.
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _record_failure(
    conn: db.Connection,
    index: int,
    item: Item,
    exc: Exception,
    unrecorded_items: list[unrecorded.Unrecorded] | None,
) -> str:
    """An answer whose write failed: an error attempt with the reason, the claim released with
    backoff (spending the attempt if the provider answered); if even that fails, the claim is
    left to its lease."""
    claim, check, ctx = item
    why = unrecorded.reason(exc)
    counted = _counts(check)
    next_check: dt.datetime | None
    if counted:
        next_check = schedule.next_check_at(
            ctx.now, claim.attempts, claim.deadline, ctx.policy, ctx.jitter_draw
        )
    else:
        next_check = _after_trouble(claim, ctx)
    result = unrecorded.write_error(
        conn, claim, check, ctx.run_id, ctx.now, next_check, counted, why
    )
    if unrecorded_items is not None:
        unrecorded_items.append(unrecorded.Unrecorded(index, why, kept=result is not None))
    return result or ERROR


def _counts(check: base.Check) -> bool:
    """Whether a check spends an attempt: only one a provider answered (not provider trouble,
    not a check held back or never sent)."""
    return check.sent and check.trouble is None


def _wait(check: base.Check, ctx: Context) -> dt.timedelta | None:
    """The provider's Retry-After, bounded (whatever float it is)."""
    give_up = ctx.policy.give_up_after
    longest = min(ctx.longest_wait, give_up) if ctx.longest_wait is not None else give_up
    return schedule.bounded_wait(check.retry_after, longest)


@dataclasses.dataclass(frozen=True)
class _Refusal:
    """What the on_failed policy decided for one refused order."""

    result: str  # REFUNDED, REJECTED or HELD
    write: shop.OrderWrite


class _Batch:
    def __init__(self, conn: db.Connection, items: list[Item]) -> None:
        self.conn, self.items = conn, items
        self.results: list[str] = [""] * len(items)
        self.releases: list[store.Release] = []

    def apply(self) -> list[str]:
        held = store.held_claims(self.conn, [claim for claim, _, _ in self.items])
        writes: list[shop.OrderWrite] = []
        refused: list[int] = []
        for index, (claim, check, ctx) in enumerate(self.items):
            answer = check.answer
            if claim.enrolment_id not in held:
                self.results[index] = SUPERSEDED  # our lease ran out; another run took over
            elif not _counts(check):
                self._provider_trouble(index, claim, check, ctx)
            elif answer.outcome is base.Outcome.FAILED:
                refused.append(index)
            elif answer.outcome is base.Outcome.COMPLETED:
                writes.append(_completion(claim, answer, ctx))
            elif answer.outcome is base.Outcome.PROCESSING:
                writes.append(
                    shop.OrderWrite(
                        claim, ctx.now, external_status="processing", message=answer.message
                    )
                )
        refusals = self._refusals(refused)
        writes.extend(refusal.write for refusal in refusals.values())
        written = shop.write_orders(self.conn, writes)
        for index, (claim, check, ctx) in enumerate(self.items):
            if not self.results[index]:
                self._after_write(
                    index, claim, check, ctx, claim.order_id in written, refusals.get(index)
                )
        store.release_claims(self.conn, self.releases)
        store.insert_attempts(
            self.conn,
            [
                store.Attempt(
                    claim,
                    ctx.run_id,
                    ctx.now,
                    str(check.answer.outcome),
                    result,
                    check.latency_ms,
                    check.http_status,
                    check.answer.message,
                    check.excerpt,
                    counted=claim.enrolment_id in held and _counts(check),
                    trouble=str(check.trouble) if check.trouble is not None else None,
                )
                for (claim, check, ctx), result in zip(self.items, self.results, strict=True)
                if check.sent  # held back, nothing was asked: no attempt to show
            ],
        )
        return self.results

    def _refusals(self, indexes: list[int]) -> dict[int, _Refusal]:
        """Apply the on_failed policy to the refused orders: lock them (compare-and-set),
        refund those the policy refunds (once ever), decide the rest."""
        orders = shop.lock_orders(self.conn, [self.items[i][0] for i in indexes])
        decisions: dict[int, tuple[str, str]] = {}
        refunds: list[shop.Refund] = []
        for index in indexes:
            claim, _, ctx = self.items[index]
            order = orders.get(claim.order_id)
            if order is None:
                continue  # decided or re-sent meanwhile: superseded after the write
            decisions[index] = _policy(ctx.on_failed, order)
            if decisions[index][0] == "refund":
                description = (
                    f"Refund for order {order.order_no or claim.order_id}: "
                    f"rejected by provider {ctx.provider_name}"
                )
                assert order.user_id is not None
                refunds.append(
                    shop.Refund(claim, order.user_id, Decimal(order.amount), description, ctx.now)
                )
        refunded = shop.insert_refunds(self.conn, refunds)
        refusals = {}
        for index, (policy, why) in decisions.items():
            claim, check, ctx = self.items[index]
            order = orders[claim.order_id]
            if policy == "refund" and claim.order_id not in refunded:
                policy, why = "hold", "this order was refunded once already"
            refusals[index] = _refusal(claim, check.answer, ctx, order, policy, why)
        return refusals

    def _provider_trouble(
        self, index: int, claim: store.Claim, check: base.Check, ctx: Context
    ) -> None:
        """The provider, not the order, failed (or nothing was sent): no attempt spent, never
        an expiry."""
        next_check = schedule.after_provider_trouble(
            ctx.now, claim.attempts - 1, ctx.policy, ctx.jitter_draw, _wait(check, ctx)
        )
        self.releases.append(
            store.Release(
                claim,
                "waiting",
                ERROR,
                check.answer.message,
                next_check,
                ctx.now,
                counted=False,
                why="provider trouble: backoff or its Retry-After, no attempt spent",
            )
        )
        self.results[index] = ERROR

    def _after_write(
        self,
        index: int,
        claim: store.Claim,
        check: base.Check,
        ctx: Context,
        written: bool,
        refusal: _Refusal | None,
    ) -> None:
        answer = check.answer
        if answer.outcome is not base.Outcome.ERROR and not written:
            self._release(index, claim, "superseded", SUPERSEDED, CHANGED_MEANWHILE, None, ctx)
        elif refusal is not None:
            state = "held" if refusal.result == HELD else "done"
            self._release(index, claim, state, refusal.result, answer.message, None, ctx)
        elif answer.outcome is base.Outcome.COMPLETED:
            self._release(index, claim, "done", COMPLETED, answer.message, None, ctx)
        else:
            planned, chosen_by = models.planned(
                ctx.choice, claim.sent_at, claim.attempts, ctx.now, ctx.policy, ctx.explore_draw
            )
            decision = schedule.decide(
                ctx.now,
                claim.attempts,
                claim.deadline,
                ctx.policy,
                ctx.jitter_draw,
                _wait(check, ctx),
                planned,
                chosen_by,
            )
            if decision.at is None:
                self._release(index, claim, "expired", EXPIRED, answer.message, None, ctx)
            else:
                result = PROCESSING if answer.outcome is base.Outcome.PROCESSING else ERROR
                self.releases.append(
                    store.Release(
                        claim,
                        "waiting",
                        str(answer.outcome),
                        answer.message,
                        decision.at,
                        ctx.now,
                        why=decision.why,
                    )
                )
                self.results[index] = result

    def _release(
        self,
        index: int,
        claim: store.Claim,
        state: str,
        result: str,
        message: str | None,
        next_check: dt.datetime | None,
        ctx: Context,
    ) -> None:
        self.releases.append(store.Release(claim, state, result, message, next_check, ctx.now))
        self.results[index] = result


def _completion(claim: store.Claim, answer: base.Answer, ctx: Context) -> shop.OrderWrite:
    note = f"{ctx.provider_name}: delivered"
    note += " (PIN stored)" if answer.pin else ""
    note += f": {answer.message}" if answer.message else ""
    return shop.OrderWrite(
        claim,
        ctx.now,
        status="approved",
        external_status="done",
        pin=answer.pin,
        set_pin=True,
        finished=True,
        message=answer.message,
        note=note,
    )


def _policy(on_failed: str, order: shop.LockedOrder) -> tuple[str, str]:
    """The policy that applies to this order, and why when it is not the configured one."""
    if on_failed == "refund" and order.user_id is None:
        return "hold", "the order has no customer to refund"
    amount = Decimal(order.amount or 0)
    if on_failed == "refund" and not amount.is_finite():
        # The shop's numeric column takes 'NaN': no sum of money to give back, a person decides.
        return "hold", f'the order\'s "sellPriceAmount" is not an amount ({amount})'
    if on_failed == "refund" and amount <= 0:
        return "reject", "nothing was charged"
    return on_failed, ""


def _refusal(
    claim: store.Claim,
    answer: base.Answer,
    ctx: Context,
    order: shop.LockedOrder,
    policy: str,
    why: str,
) -> _Refusal:
    said = f"{ctx.provider_name}: refused" + (f": {answer.message}" if answer.message else "")
    if policy == "hold":
        note = f"{said}; left pending for a person" + (f" ({why})" if why else "")
        write = shop.OrderWrite(
            claim, ctx.now, external_status="failed", message=answer.message, note=note
        )
        return _Refusal(HELD, write)
    if policy == "refund":
        note = f"{said}; refunded {Decimal(order.amount)} {order.currency}"
    else:
        note = f"{said}; not refunded ({why or 'on_failed: reject'})"
    write = shop.OrderWrite(
        claim,
        ctx.now,
        status="rejected",
        external_status="failed",
        finished=True,
        message=answer.message,
        note=note,
    )
    return _Refusal(REFUNDED if policy == "refund" else REJECTED, write)
