"""The claim / ask / record loop of one sweep, over one lane per provider. Imported only when
something is due.

Nothing one lane does stops the others: an exception in a lane's work, its health bookkeeping
or the recording of its answers becomes that lane's errors and a problem line. Only a database
that cannot be used ends the sweep early."""

import collections
import concurrent.futures
import dataclasses
import datetime as dt
import logging
import random
import sys
import threading
import time
import uuid
from collections.abc import Sequence

import psycopg

from ordermon import config, db
from ordermon.config import providers as provider_config
from ordermon.providers import base
from ordermon.sweep import (
    health,
    lanes,
    models,
    outcome,
    store,
    unrecorded,
    verdict,
)
from ordermon.sweep.report import Clock, OnResult, Options, Progress, Report

log = logging.getLogger("ordermon.sweeper")
_RECORD_BATCH = 200  # answers per transaction: one commit for many orders
Future = concurrent.futures.Future[lanes.Result]
Work = dict[Future, tuple[lanes.Lane, lanes.Claims]]
ABANDONED = "not checked: the sweep reached its time_limit; checked again soon"


def run(
    work: "Sweeper",
    chosen: Sequence[provider_config.ProviderConfig],
    provider_rules: Sequence[store.ProviderRules],
) -> None:
    """Open a lane per provider, work until done or stopped, and close the lanes."""
    cfg, conn, report = work.cfg, work.conn, work.report
    slots = threading.BoundedSemaphore(cfg.sweep.concurrency)
    all_lanes = [lanes.Lane(p, cfg, r, slots) for p, r in zip(chosen, provider_rules, strict=True)]
    _open_lanes(conn, all_lanes, work.clock, cfg.sweep.lease)
    work.choices = _choices(conn, chosen, work)
    if work.progress is not None:
        open_ids = [lane.provider.id for lane in all_lanes if lane.open]
        work.progress.start(store.count_due(conn, open_ids, work.clock()))
    # The main thread talks to PostgreSQL, a round trip at a time, while the provider threads
    # parse replies. After each round trip it must win the GIL back, which by default can
    # take 5 ms while the others hold it: shorter turns keep the database busy.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    finished_in_time = False
    try:
        report.stopped_by = work.work(all_lanes)
        finished_in_time = report.stopped_by != "time_limit"
    finally:
        # At the time limit (or when the database failed) the calls still running are
        # abandoned, never waited for; their claims were released or return with the lease.
        for lane in all_lanes:
            lane.close(wait=finished_in_time)
        sys.setswitchinterval(switch_interval)
    report.problems.extend(verdict.problems(all_lanes, cfg.providers))


def _choices(
    conn: db.Connection, chosen: Sequence[provider_config.ProviderConfig], work: "Sweeper"
) -> dict[str, models.Choice]:
    """The learned providers' plans, their summaries refreshed first when due. A summary that
    cannot be refreshed or read (the table's grant missing, say) means backoff, said once."""
    try:
        return models.choices(conn, chosen, work.clock())
    except Exception as exc:
        if conn.broken or conn.closed or isinstance(exc, psycopg.OperationalError):
            raise
        log.warning("learned schedules not available (%s): backoff", type(exc).__name__)
        work.report.problems.append(
            f"the learned schedule could not be read ({type(exc).__name__}): this sweep used "
            "backoff for every provider"
        )
        return {}


def _open_lanes(
    conn: db.Connection, all_lanes: list[lanes.Lane], clock: Clock, lease: dt.timedelta
) -> None:
    """Paused providers get no work; one whose cool-down is over gets a single probe. No
    stored pause lasts past pause.max_cooldown from now."""
    now = clock()
    states = health.load(conn, [lane.provider.id for lane in all_lanes])
    for lane in all_lanes:
        state = states.get(lane.provider.id)
        if state is None:
            continue
        latest = now + lane.longest_hold
        if state.paused_until is not None and state.paused_until > latest:
            health.shorten(conn, lane.provider.id, latest)
            state = dataclasses.replace(state, paused_until=latest)
        if state.paused(now):
            lane.open = False
        elif state.needs_probe(now):
            lane.probing = health.start_probe(conn, lane.provider.id, now, now + lease)
            lane.open = lane.probing


class Sweeper:
    """The claim / ask / record loop of one run, over all its lanes."""

    def __init__(
        self,
        conn: db.Connection,
        cfg: config.Config,
        options: Options,
        run_id: int,
        report: Report,
        clock: Clock,
        started: float,
        on_result: OnResult | None,
    ) -> None:
        self.conn, self.cfg, self.options, self.run_id = conn, cfg, options, run_id
        self.report, self.clock, self.started, self.on_result = report, clock, started, on_result
        self.counts = report.counts
        self.token = uuid.uuid4()
        self.stop: threading.Event | None = None
        self.progress: Progress | None = None
        self.choices: dict[str, models.Choice] = {}

    def work(self, all_lanes: list[lanes.Lane]) -> str | None:
        limits = self.cfg.sweep
        in_flight: Work = {}
        claiming, stopped_by = True, None
        while True:
            elapsed = time.monotonic() - self.started
            if elapsed >= limits.time_limit.total_seconds():
                self._collect([f for f in in_flight if f.done()], in_flight)
                self._abandon(in_flight)
                self._settle_deferred(all_lanes, force=True)
                return "time_limit"
            if claiming and elapsed >= limits.soft_time_limit.total_seconds():
                claiming, stopped_by = False, "soft_time_limit"
            if claiming and self.stop is not None and self.stop.is_set():
                claiming, stopped_by = False, "signal"
            if claiming:
                claiming = self._claim_more(all_lanes, in_flight)
            if not in_flight:
                if claiming:
                    continue
                self._settle_deferred(all_lanes, force=True)
                return stopped_by
            budget = limits.time_limit.total_seconds() - (time.monotonic() - self.started)
            done, _ = concurrent.futures.wait(
                in_flight, timeout=max(budget, 0.0), return_when="FIRST_COMPLETED"
            )
            self._collect(list(done), in_flight)

    def _collect(self, done: list[Future], in_flight: Work) -> None:
        finished = []
        for future in done:
            lane, claims = in_flight.pop(future)
            finished.append((lane, claims, _result(lane, claims, future)))
        if finished:
            self._record(finished)

    def _claim_more(self, all_lanes: list[lanes.Lane], in_flight: Work) -> bool:
        """Claim for every lane with room; False once nothing more will be claimed."""
        for lane in all_lanes:
            want = lane.wants(self.cfg.sweep.batch_size)
            if self.options.limit is not None:
                want = min(want, self.options.limit - self.counts["claimed"])
            if want <= 0:
                continue
            # Taken before the claim, so the lease is never thought longer than it is.
            lease_end = time.monotonic() + self.cfg.sweep.lease.total_seconds()
            claims = self._claim(lane, want)
            if len(claims) < want:
                lane.open = False  # nothing more is due now (or other sweeps hold it)
            by_reference: lanes.Claims = collections.defaultdict(list)
            for claim in claims:
                if claim.still_current:
                    by_reference[claim.reference].append(claim)
                else:
                    self.counts["superseded"] += 1
                    self._tell(claim, None, outcome.SUPERSEDED)
            lane.outstanding += sum(len(c) for c in by_reference.values())
            if not by_reference:
                continue
            try:
                submitted = lane.submit(list(by_reference), lease_end)
            except Exception as exc:  # the adapter could not be built or plan: nothing sent
                log.debug("provider lane failed", exc_info=True)
                lane.open = False
                self._record([(lane, by_reference, _unsent(lane, by_reference, exc))])
                continue
            for group, future in submitted:
                in_flight[future] = (lane, {ref: by_reference[ref] for ref in group})
        if self.options.limit is not None and self.counts["claimed"] >= self.options.limit:
            return False
        return any(lane.open for lane in all_lanes)

    def _claim(self, lane: lanes.Lane, want: int) -> list[store.Claim]:
        now = self.clock()
        with self.conn.transaction():
            claims = store.claim(
                self.conn, [lane.rules], want, self.token, now, now + self.cfg.sweep.lease
            )
            stale = [c for c in claims if not c.still_current]
            store.supersede_claims(
                self.conn, stale, "the order was decided or re-sent elsewhere", now
            )
        self.counts["claimed"] += len(claims)
        return claims

    def _record(self, finished: list[lanes.Finished]) -> None:
        """Record every answer that arrived together, after telling each provider's health;
        a transport failure waits until its lane tells whether it was the order's or the
        provider's."""
        ready: list[lanes.Finished] = []
        for lane, claims, checks in finished:
            first = next((checks[ref] for ref in claims if ref in checks), None)
            if first is not None:
                verdict.judge(self.conn, lane, first, self.clock())
            ready.extend(verdict.classify(lane, claims, checks, first))
        self._write(ready)
        self._settle_deferred(list({id(lane): lane for lane, _, _ in finished}.values()))

    def _settle_deferred(self, some_lanes: list[lanes.Lane], force: bool = False) -> None:
        for lane in some_lanes:
            self._write(verdict.settle(lane, force))

    def _write(self, ready: list[lanes.Finished]) -> None:
        """Record answers, a bounded batch per transaction."""
        items: list[outcome.Item] = []
        lanes_of: list[lanes.Lane] = []
        for lane, claims_by_reference, checks in ready:
            provider = lane.provider
            for reference, claims in claims_by_reference.items():
                check = checks.get(reference) or base.Check(base.error("no answer"), latency_ms=0)
                for claim in claims:
                    ctx = outcome.Context(
                        provider.name,
                        provider.policy,
                        self.cfg.on_failed,
                        self.run_id,
                        self.clock(),
                        random.uniform(-1.0, 1.0),
                        lane.longest_hold,
                        self.choices.get(provider.id),
                        random.random(),
                    )
                    items.append((claim, check, ctx))
                    lanes_of.append(lane)
        for start in range(0, len(items), _RECORD_BATCH):
            chunk = items[start : start + _RECORD_BATCH]
            chunk_lanes = lanes_of[start : start + _RECORD_BATCH]
            failures: list[unrecorded.Unrecorded] = []
            results = outcome.record_many(self.conn, chunk, failures)
            for failure in failures:
                chunk_lanes[failure.index].unrecorded.append((failure.reason, failure.kept))
            for (claim, check, _), result, lane in zip(chunk, results, chunk_lanes, strict=True):
                lane.outstanding -= 1
                self.counts["failed" if result in outcome.FAILED_RESULTS else result] += 1
                self._tell(claim, check, result)

    def _tell(self, claim: store.Claim, check: base.Check | None, result: str) -> None:
        """Show one result (``-v``, a progress bar): a display that fails changes nothing."""
        try:
            if self.on_result is not None:
                self.on_result(claim, check, result)
            if self.progress is not None:
                self.progress.advance(1)
        except Exception as exc:
            log.warning("could not show a result (%s)", type(exc).__name__)

    def _abandon(self, in_flight: Work) -> None:
        """At the time limit: give back the claims of the calls still running, unspent. Their
        next check waits out the provider's timeout, so no sweep asks while an abandoned call
        may still be under way."""
        now = self.clock()
        releases: list[store.Release] = []
        for lane, claims_by_reference in in_flight.values():
            soon = now + dt.timedelta(seconds=lane.provider.timeout + 1)
            for claims in claims_by_reference.values():
                releases.extend(
                    store.Release(
                        c,
                        "waiting",
                        outcome.ERROR,
                        ABANDONED,
                        soon,
                        now,
                        counted=False,
                        why="abandoned at the time limit: after the provider's timeout",
                    )
                    for c in claims
                )
        in_flight.clear()
        if releases:
            with self.conn.transaction():
                store.release_claims(self.conn, releases)


def _result(lane: lanes.Lane, claims: lanes.Claims, future: Future) -> lanes.Result:
    """A finished request's checks; a worker that raised is that group's failure."""
    try:
        return future.result()
    except Exception as exc:
        return _unsent(lane, claims, exc)


def _unsent(lane: lanes.Lane, claims: lanes.Claims, exc: Exception) -> lanes.Result:
    lane.internal_errors.append(type(exc).__name__)
    failure = base.Check(
        base.error(f"not checked: internal error ({type(exc).__name__})"), 0, sent=False
    )
    return dict.fromkeys(claims, failure)
