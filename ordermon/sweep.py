"""One sweep: enrol new dispatches, expire the exhausted, claim what is due, ask providers
concurrently (never inside a transaction), and record every answer under its claim."""

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence

from ordermon import config, db, errors, migrate, outcome, providers, store
from ordermon.providers import base

log = logging.getLogger("ordermon.sweep")
Clock = Callable[[], dt.datetime]
OnResult = Callable[[store.Claim, base.Check, str], None]
COUNT_NAMES = store.RUN_COUNTS


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Options:
    limit: int | None = None
    provider_names: tuple[str, ...] = ()


@dataclasses.dataclass
class Report:
    run_id: int
    counts: dict[str, int]
    stopped_by: str | None
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
            "stopped_by": self.stopped_by,
            **self.counts,
        }


def selected_providers(cfg: config.Config, names: Sequence[str]) -> list[config.ProviderConfig]:
    """The providers a run works on: all configured, or those named with ``--provider``."""
    chosen = []
    for name in names:
        provider = cfg.provider_by_name(name)
        if provider is None:
            known = ", ".join(p.name for p in cfg.providers) or "none configured"
            raise errors.UsageError(f"--provider {name}: no such provider (configured: {known})")
        chosen.append(provider)
    return chosen or list(cfg.providers)


def rules(chosen: Sequence[config.ProviderConfig]) -> list[store.ProviderRules]:
    return [
        store.ProviderRules(
            id=p.id,
            reference_rule=providers.reference_rule(p.kind),
            first_check_after=p.policy.first_check_after,
            give_up_after=p.policy.give_up_after,
            max_attempts=p.policy.max_attempts,
        )
        for p in chosen
    ]


def require_schema(conn: db.Connection) -> None:
    version = store.schema_version(conn)
    if version is None or version < migrate.latest_version():
        raise errors.DatabaseError(
            "ordermon's schema is missing or older than this version: run `ordermon migrate`"
        )


def run(
    conn: db.Connection,
    cfg: config.Config,
    options: Options,
    *,
    clock: Clock = utc_now,
    on_result: OnResult | None = None,
) -> Report:
    """Sweep once. ``conn`` is in autocommit mode; each step opens its own short transaction."""
    started = time.monotonic()
    require_schema(conn)
    chosen = selected_providers(cfg, options.provider_names)
    provider_rules = rules(chosen)
    run_id = store.start_run(conn, "sweep", socket.gethostname(), os.getpid(), clock())
    counts = dict.fromkeys(COUNT_NAMES, 0)
    with conn.transaction():
        if store.try_enrol_lock(conn):
            counts["enrolled"] = store.enrol(conn, provider_rules)
    counts["expired"] += store.expire_exhausted(conn, provider_rules, clock())
    stopped_by = None
    if chosen:
        stopped_by = _check_due(
            conn, cfg, chosen, provider_rules, options, run_id, counts, clock, started, on_result
        )
    store.finish_run(conn, run_id, counts, stopped_by, 0, clock())
    return Report(run_id, counts, stopped_by, time.monotonic() - started)


def _check_due(
    conn: db.Connection,
    cfg: config.Config,
    chosen: Sequence[config.ProviderConfig],
    provider_rules: Sequence[store.ProviderRules],
    options: Options,
    run_id: int,
    counts: dict[str, int],
    clock: Clock,
    started: float,
    on_result: OnResult | None,
) -> str | None:
    limits = cfg.sweep
    adapters = {p.id: providers.build(p) for p in chosen}
    by_id = {p.id: p for p in chosen}
    token = uuid.uuid4()
    in_flight: dict[concurrent.futures.Future[base.Check], store.Claim] = {}
    claiming, stopped_by = True, None
    # Claim no more than the workers can finish within the lease even if every call takes
    # its full timeout, so claimed orders never sit queued past their lease.
    slowest = max(p.timeout for p in chosen)
    capacity = max(int(limits.concurrency * limits.lease.total_seconds() / slowest), 1)
    executor = concurrent.futures.ThreadPoolExecutor(limits.concurrency, "ordermon-check")
    try:
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= limits.time_limit.total_seconds():
                stopped_by = "time_limit"
                break
            if claiming and elapsed >= limits.soft_time_limit.total_seconds():
                claiming, stopped_by = False, "soft_time_limit"
            if claiming and len(in_flight) < limits.concurrency:
                want = min(limits.batch_size, capacity - len(in_flight))
                if options.limit is not None:
                    want = min(want, options.limit - counts["claimed"])
                claims = _claim(conn, provider_rules, want, token, cfg, clock) if want > 0 else []
                counts["claimed"] += len(claims)
                # Fewer than asked: nothing more is due now (or other sweeps hold it).
                claiming = want > 0 and len(claims) == want
                for claim in claims:
                    if not claim.still_current:
                        counts["superseded"] += 1
                        continue
                    future = executor.submit(_ask, adapters[claim.provider_id], claim.reference)
                    in_flight[future] = claim
            if not in_flight:
                if claiming:
                    continue
                break
            budget = limits.time_limit.total_seconds() - (time.monotonic() - started)
            done, _ = concurrent.futures.wait(
                in_flight, timeout=max(budget, 0.0), return_when="FIRST_COMPLETED"
            )
            for future in done:
                claim = in_flight.pop(future)
                check = future.result()
                provider = by_id[claim.provider_id]
                ctx = outcome.Context(
                    provider.name,
                    provider.policy,
                    cfg.on_failed,
                    run_id,
                    clock(),
                    random.uniform(-1.0, 1.0),
                )
                result = outcome.record(conn, claim, check, ctx)
                _count(counts, result)
                if on_result is not None:
                    on_result(claim, check, result)
    finally:
        # On a time limit the calls still running are abandoned: their claims return to the
        # queue when the lease ends.
        executor.shutdown(wait=not in_flight, cancel_futures=True)
        for adapter in adapters.values():
            adapter.close()
    return stopped_by


def _claim(
    conn: db.Connection,
    provider_rules: Sequence[store.ProviderRules],
    want: int,
    token: uuid.UUID,
    cfg: config.Config,
    clock: Clock,
) -> list[store.Claim]:
    now = clock()
    with conn.transaction():
        claims = store.claim(conn, provider_rules, want, token, now, now + cfg.sweep.lease)
        stale = [c for c in claims if not c.still_current]
        store.supersede_claims(conn, stale, "the order was decided or re-sent elsewhere", now)
    return claims


def _ask(adapter: base.Provider, reference: str) -> base.Check:
    """Runs in a worker thread: adapters never raise, but a bug must not lose the sweep."""
    started = time.monotonic()
    try:
        return adapter.check(reference)
    except Exception as exc:
        log.exception("provider adapter failed")
        return base.Check(
            base.Answer(base.Outcome.ERROR, message=f"internal error ({type(exc).__name__})"),
            latency_ms=int((time.monotonic() - started) * 1000),
        )


def _count(counts: dict[str, int], result: str) -> None:
    if result in outcome.FAILED_RESULTS:
        counts["failed"] += 1
    elif result in counts:
        counts[result] += 1
