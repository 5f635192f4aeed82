"""The claim / ask / record loop of one sweep, over one lane per provider. Imported only when
something is due."""

import collections
import concurrent.futures
import datetime as dt
import random
import sys
import threading
import time
import uuid
from collections.abc import Sequence

from ordermon import config, db, health, lanes, outcome, provider_config, store
from ordermon.providers import base
from ordermon.sweep import Clock, OnResult, Options, Progress, Report

_RECORD_BATCH = 200  # answers per transaction: one commit for many orders
Work = dict[
    "concurrent.futures.Future[lanes.Result]", tuple[lanes.Lane, dict[str, list[store.Claim]]]
]


def run(
    work: "Sweeper",
    chosen: Sequence[provider_config.ProviderConfig],
    provider_rules: Sequence[store.ProviderRules],
) -> None:
    """Open a lane per provider, work until done or stopped, and close the lanes."""
    cfg, conn, report = work.cfg, work.conn, work.report
    slots = threading.BoundedSemaphore(cfg.sweep.concurrency)
    all_lanes = [lanes.Lane(p, cfg, r, slots) for p, r in zip(chosen, provider_rules, strict=True)]
    _open_lanes(conn, cfg, all_lanes, work.clock)
    if work.progress is not None:
        open_ids = [lane.provider.id for lane in all_lanes if lane.open]
        work.progress.start(store.count_due(conn, open_ids, work.clock()))
    # The main thread talks to PostgreSQL, a round trip at a time, while the provider threads
    # parse replies. After each round trip it must win the GIL back, which by default can
    # take 5 ms while the others hold it: shorter turns keep the database busy.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        report.stopped_by = work.work(all_lanes)
    finally:
        # On a time limit, calls still running are abandoned: their claims return to the
        # queue when the lease ends.
        for lane in all_lanes:
            lane.close(wait=report.stopped_by != "time_limit")
        sys.setswitchinterval(switch_interval)
    report.problems.extend(_problems(all_lanes))


def _open_lanes(
    conn: db.Connection, cfg: config.Config, all_lanes: list[lanes.Lane], clock: Clock
) -> None:
    """Paused providers get no work; one whose cool-down is over gets a single probe."""
    now = clock()
    states = health.load(conn, [lane.provider.id for lane in all_lanes])
    for lane in all_lanes:
        state = states.get(lane.provider.id)
        if state is None:
            continue
        if state.paused(now):
            lane.open = False
        elif state.needs_probe(now):
            lane.probing = health.start_probe(conn, lane.provider.id, now, now + cfg.sweep.lease)
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

    def work(self, all_lanes: list[lanes.Lane]) -> str | None:
        limits = self.cfg.sweep
        in_flight: Work = {}
        claiming, stopped_by = True, None
        while True:
            elapsed = time.monotonic() - self.started
            if elapsed >= limits.time_limit.total_seconds():
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
                return stopped_by
            budget = limits.time_limit.total_seconds() - (time.monotonic() - self.started)
            done, _ = concurrent.futures.wait(
                in_flight, timeout=max(budget, 0.0), return_when="FIRST_COMPLETED"
            )
            finished = [(*in_flight.pop(future), future.result()) for future in done]
            self._record(finished)

    def _claim_more(self, all_lanes: list[lanes.Lane], in_flight: Work) -> bool:
        """Claim for every lane with room; False once nothing more will be claimed."""
        for lane in all_lanes:
            want = lane.wants(self.cfg.sweep.batch_size)
            if self.options.limit is not None:
                want = min(want, self.options.limit - self.counts["claimed"])
            if want <= 0:
                continue
            claims = self._claim(lane, want)
            if len(claims) < want:
                lane.open = False  # nothing more is due now (or other sweeps hold it)
            by_reference: dict[str, list[store.Claim]] = collections.defaultdict(list)
            for claim in claims:
                if claim.still_current:
                    by_reference[claim.reference].append(claim)
                else:
                    self.counts["superseded"] += 1
            lane.outstanding += sum(len(c) for c in by_reference.values())
            if not by_reference:
                continue
            for group, future in lane.submit(list(by_reference)):
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

    def _record(
        self,
        finished: list[tuple[lanes.Lane, dict[str, list[store.Claim]], lanes.Result]],
    ) -> None:
        """Record every answer that arrived together, a bounded batch per transaction."""
        items: list[tuple[store.Claim, base.Check, outcome.Context]] = []
        lanes_of: list[lanes.Lane] = []
        for lane, claims_by_reference, checks in finished:
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
                    )
                    items.append((claim, check, ctx))
                    lanes_of.append(lane)
        for start in range(0, len(items), _RECORD_BATCH):
            chunk = items[start : start + _RECORD_BATCH]
            results = outcome.record_many(self.conn, chunk)
            chunk_lanes = lanes_of[start : start + _RECORD_BATCH]
            for (claim, check, _), result, lane in zip(chunk, results, chunk_lanes, strict=True):
                lane.outstanding -= 1
                self.counts["failed" if result in outcome.FAILED_RESULTS else result] += 1
                if self.on_result is not None:
                    self.on_result(claim, check, result)
                if self.progress is not None:
                    self.progress.advance(1)
        for lane, claims_by_reference, checks in finished:
            first = next((checks.get(ref) for ref in claims_by_reference), None)
            if first is not None:
                self._update_health(lane, first)

    def _update_health(self, lane: lanes.Lane, check: base.Check) -> None:
        """One request's verdict on its provider (the breaker lives in the database)."""
        if not check.sent:
            return
        now = self.clock()
        provider = lane.provider
        if check.trouble is base.Trouble.THROTTLED:
            wait = check.retry_after or 60.0  # the lane already holds; now tell other sweeps
            health.held(self.conn, provider.id, now + dt.timedelta(seconds=wait), "throttled")
            return
        if check.trouble is None:
            if lane.probing or not lane.healthy_reported:
                health.recovered(self.conn, provider.id, now)
                lane.probing, lane.healthy_reported = False, True
            return
        if check.trouble is base.Trouble.CREDENTIALS:
            lane.credential_failures += 1
            lane.credential_message = check.answer.message or f"HTTP {check.http_status}"
        lane.healthy_reported = False
        until = health.failed(self.conn, provider, str(check.trouble), now, probe=lane.probing)
        if until is not None:
            lane.open, lane.probing = False, False
            lane.hold.hold(float("inf"), "the provider is paused")
            lane.paused_note = (
                f"provider {provider.name} is paused until {until:%Y-%m-%d %H:%M:%S} UTC after "
                f"repeated {check.trouble} failures (last: {check.answer.message}); its orders "
                "wait without spending attempts"
            )


def _problems(all_lanes: list[lanes.Lane]) -> list[str]:
    """One line per misconfigured or newly paused provider, for stderr (and cron's mail)."""
    lines = []
    for lane in all_lanes:
        if lane.credential_failures:
            lines.append(
                f"provider {lane.provider.name} refused ordermon's credentials on "
                f"{lane.credential_failures} request(s) ({lane.credential_message}); check its "
                "token/kod/sifre in the config and that this host's IP address is allowed. "
                "Its orders are kept and retried."
            )
        if lane.paused_note:
            lines.append(lane.paused_note)
    return lines
