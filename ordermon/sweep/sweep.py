"""One sweep: enrol new dispatches, expire the exhausted, and, when anything is due, hand the
claim / ask / record loop to `sweeper`. An idle run (the common case, every minute) stops
after one count and never imports the provider, HTTP or recording code."""

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import psycopg

from ordermon import config, db, errors, migrate, providers
from ordermon.config import providers as provider_config
from ordermon.events import outbox
from ordermon.sweep import enrolment, runs, store
from ordermon.sweep.report import Clock, OnResult, Options, Progress, Report, utc_now

__all__ = ["Clock", "OnResult", "Options", "Progress", "Report", "run", "utc_now"]

if TYPE_CHECKING:
    pass


def selected_providers(
    cfg: config.Config, names: Sequence[str]
) -> list[provider_config.ProviderConfig]:
    """The providers a run works on: all configured, or those named with ``--provider``."""
    chosen = []
    for name in names:
        provider = cfg.provider_by_name(name)
        if provider is None:
            known = ", ".join(p.name for p in cfg.providers) or "none configured"
            raise errors.UsageError(f"--provider {name}: no such provider (configured: {known})")
        chosen.append(provider)
    return chosen or list(cfg.providers)


def rules(chosen: Sequence[provider_config.ProviderConfig]) -> list[store.ProviderRules]:
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


def _learned_firsts(
    conn: db.Connection, chosen: Sequence[provider_config.ProviderConfig], clock: Clock
) -> "Callable[[], dict[str, enrolment.FirstCheck]] | None":
    """The learned providers' first checks, read only when enrolment finds something new."""
    if not any(p.policy.learned for p in chosen):
        return None

    def read() -> dict[str, enrolment.FirstCheck]:
        from ordermon.sweep import models

        return models.first_checks(conn, chosen, clock())

    return read


def require_schema(conn: db.Connection) -> None:
    version = runs.schema_version(conn)
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
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> Report:
    """Sweep once. ``conn`` is in autocommit mode; each step opens its own short transaction.

    Once ``stop`` is set (SIGTERM) no more orders are claimed; the calls in flight finish and
    are recorded."""
    started = time.monotonic()
    require_schema(conn)
    outbox.configure(conn, cfg.notify)
    outbox.register(conn, cfg.notify.webhooks)
    chosen = selected_providers(cfg, options.provider_names)
    provider_rules = rules(chosen)
    run_id = runs.start_run(conn, "sweep", socket.gethostname(), os.getpid(), clock())
    counts = dict.fromkeys(runs.RUN_COUNTS, 0)
    try:
        with conn.transaction():
            enrolment.enrol_lock(conn)
            counts["enrolled"] = enrolment.enrol(
                conn, provider_rules, learned_firsts=_learned_firsts(conn, chosen, clock)
            )
        counts["expired"] += enrolment.expire_exhausted(conn, provider_rules, clock())
        report = Report(run_id, counts, None, 0.0)
        names = {p.id: p.name for p in cfg.providers}
        report.problems.extend(enrolment.unwatched_problems(conn, rules(cfg.providers), names))
        if chosen and store.count_due(conn, [p.id for p in chosen], clock()):
            from ordermon.sweep import sweeper

            work = sweeper.Sweeper(conn, cfg, options, run_id, report, clock, started, on_result)
            work.stop, work.progress = stop, progress
            sweeper.run(work, chosen, provider_rules)
    except (errors.OrdermonError, psycopg.Error):
        # The run failed (a refused grant, the database gone): say so in its row when the
        # database still listens, so `status` shows a failed run, not one "running" forever.
        with contextlib.suppress(psycopg.Error):
            runs.finish_run(conn, run_id, counts, None, 1, clock())
        raise
    runs.finish_run(conn, run_id, counts, report.stopped_by, 0, clock())
    report.seconds = time.monotonic() - started
    return report
