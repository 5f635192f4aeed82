"""What a sweep learns about a provider from each request: the breaker and holds (kept in
the database, see `health`), whether a transport failure was the order's or the provider's,
and the problem lines a run reports per provider."""

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence

from ordermon import db
from ordermon.config import human
from ordermon.config import providers as provider_config
from ordermon.providers import base
from ordermon.sweep import health, lanes, schedule, unrecorded

log = logging.getLogger("ordermon.sweeper")


def judge(conn: db.Connection, lane: lanes.Lane, check: base.Check, now: dt.datetime) -> None:
    """Tell the provider's health one request's verdict; a failure to do so is the lane's
    internal error, not the sweep's (unless the database is unusable)."""
    try:
        _update_health(conn, lane, check, now)
    except Exception as exc:
        if unrecorded.unusable(conn, exc):
            raise
        log.debug("provider health not recorded", exc_info=True)
        lane.internal_errors.append(type(exc).__name__)


def _update_health(
    conn: db.Connection, lane: lanes.Lane, check: base.Check, now: dt.datetime
) -> None:
    """One request's verdict on its provider (the breaker lives in the database)."""
    if not check.sent:
        return
    provider = lane.provider
    if lanes.asks_to_wait(check):
        # The lane already holds; now tell other sweeps, for no longer than the cap.
        wait = schedule.bounded_wait(lanes.asked_wait(check), lane.longest_hold)
        health.held(conn, provider.id, now + (wait or dt.timedelta(0)), "throttled")
        return
    if check.trouble is None:
        if lane.probing or not lane.healthy_reported:
            health.recovered(conn, provider.id, now)
            lane.probing, lane.healthy_reported = False, True
        return
    if check.trouble is base.Trouble.TRANSPORT and _own_so_far(lane):
        return  # the order's own failure (see `classify`): not the breaker's business
    if check.trouble is base.Trouble.CREDENTIALS:
        lane.credential_failures += 1
        lane.credential_message = check.answer.message or f"HTTP {check.http_status}"
    lane.healthy_reported = False
    until = health.failed(conn, provider, str(check.trouble), now, probe=lane.probing)
    if until is not None:
        lane.open, lane.probing, lane.answered_well = False, False, False
        lane.hold.hold((until - now).total_seconds(), "the provider is paused")
        lane.paused_note = (
            f"provider {provider.name} is paused until {human.moment(until, lane.timezone)} after "
            f"repeated {check.trouble} failures (last: {check.answer.message}); its orders "
            "wait without spending attempts"
        )


def _own_so_far(lane: lanes.Lane) -> bool:
    """Whether the next transport failure is taken as the order's own: the provider answered
    others well in this run and has not failed pause.after_failures times in a row since."""
    return lane.answered_well and lane.failures_in_row + 1 < lane.provider.pause.after_failures


def classify(
    lane: lanes.Lane, claims: lanes.Claims, checks: lanes.Result, first: base.Check | None
) -> list[lanes.Finished]:
    """What to record now. A transport failure is the order's own (an error that spends an
    attempt) when the provider answered others well in this run; until that is known it
    waits in the lane (`settle` records it as the provider's trouble if no good answer
    comes)."""
    if first is None or not first.sent or lanes.asks_to_wait(first):
        return [(lane, claims, checks)]
    if first.trouble is None:
        lane.answered_well, lane.failures_in_row = True, 0
        theirs = [(lane, c, _own_failure(k)) for c, k in lane.deferred]
        lane.deferred = []
        return [(lane, claims, checks), *theirs]
    if first.trouble is not base.Trouble.TRANSPORT:
        return [(lane, claims, checks)]
    own = _own_so_far(lane)
    lane.failures_in_row += 1
    if own:
        return [(lane, claims, _own_failure(checks))]
    lane.answered_well = False  # failing again and again: the provider's trouble after all
    lane.deferred.append((claims, checks))
    return []


def settle(lane: lanes.Lane, force: bool) -> list[lanes.Finished]:
    """The deferred transport failures to record now as the provider's trouble (no attempt
    spent): once nothing else of the lane is in flight that could show the provider works,
    or at the end of the run (``force``)."""
    waiting = sum(len(c) for claims, _ in lane.deferred for c in claims.values())
    if not lane.deferred or not (force or lane.outstanding <= waiting):
        return []
    flushed = [(lane, claims, checks) for claims, checks in lane.deferred]
    lane.deferred = []
    return flushed


def _own_failure(checks: lanes.Result) -> lanes.Result:
    return {
        reference: dataclasses.replace(
            check,
            trouble=None,
            answer=base.error(
                f"{check.answer.message or 'request failed'} (this order only: the provider "
                "answers others)"
            ),
        )
        for reference, check in checks.items()
    }


def problems(
    all_lanes: list[lanes.Lane], configured: Sequence[provider_config.ProviderConfig]
) -> list[str]:
    """One line per misconfigured, failing or newly paused provider, for stderr (and cron's
    mail); ``configured`` is the config's list, whose positions name the keys."""
    lines = []
    for lane in all_lanes:
        name = lane.provider.name
        if lane.credential_failures:
            index = next((i for i, p in enumerate(configured) if p is lane.provider), None)
            keys = (
                provider_config.credential_hint(lane.provider, index)
                if index is not None
                else "its credentials"
            )
            lines.append(
                f"provider {name} refused ordermon's credentials on "
                f"{human.plural(lane.credential_failures, 'request')} "
                f"({lane.credential_message}); check {keys} in the config and "
                "that this host's IP address is allowed. Its orders are kept and retried."
            )
        if lane.paused_note:
            lines.append(lane.paused_note)
        if lane.internal_errors:
            kinds = ", ".join(sorted(set(lane.internal_errors)))
            lines.append(
                f"provider {name}: internal error ({kinds}) on "
                f"{human.plural(len(lane.internal_errors), 'request')}; its orders are kept and "
                "retried"
            )
        if lane.unrecorded:
            reasons = "; ".join(sorted({reason for reason, _ in lane.unrecorded}))
            left = sum(1 for _, kept in lane.unrecorded if not kept)
            lines.append(
                f"provider {name}: {human.plural(len(lane.unrecorded), 'answer')} could not be "
                "recorded "
                f"({reasons}); recorded as errors and retried"
                + (f", {left} left to their lease" if left else "")
            )
    return lines
