"""A sweep as cron (or loop mode) runs it: health pings around it, pruning and metrics after
it; and loop mode, one sweep after another until a signal, riding out database blips."""

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from ordermon import config, db, errors
from ordermon.ops import pings
from ordermon.sweep import runs, sweep

log = logging.getLogger("ordermon.runner")
Emit = Callable[[sweep.Report], None]


def once(
    cfg: config.Config,
    options: sweep.Options,
    *,
    stop: threading.Event | None = None,
    on_result: sweep.OnResult | None = None,
    progress: sweep.Progress | None = None,
    clock: sweep.Clock = sweep.utc_now,
) -> sweep.Report:
    """One sweep with its pings, pruning and metrics; raises OrdermonError on failure."""
    pings.ping(cfg.ping_url, "start", "", cfg.ping_timeout)
    try:
        with (
            db.translated_errors(),
            db.connect(
                db.resolve_url(cfg.database_url), autocommit=True, pooling=cfg.database_pooler
            ) as conn,
        ):
            report = sweep.run(
                conn, cfg, options, clock=clock, on_result=on_result, stop=stop, progress=progress
            )
            # Events after the provider work, within their own time budget.
            if cfg.notify.webhooks:
                from ordermon.events import webhooks

                report.delivery = webhooks.deliver(conn, cfg, clock).as_dict()
            report.pruned = runs.prune(conn, clock() - cfg.history_keep)
            if cfg.metrics_textfile is not None:
                _write_metrics(conn, cfg, report, clock())
    except errors.OrdermonError as exc:
        pings.ping(
            cfg.ping_url, str(exc.exit_code), f"ordermon sweep failed: {exc}", cfg.ping_timeout
        )
        raise
    counts = ", ".join(f"{v} {k}" for k, v in report.counts.items() if v) or "nothing to do"
    pings.ping(cfg.ping_url, "0", f"sweep #{report.run_id}: {counts}", cfg.ping_timeout)
    return report


def loop(
    cfg: config.Config,
    options: sweep.Options,
    every: dt.timedelta,
    stop: threading.Event,
    emit: Emit,
    *,
    on_result: sweep.OnResult | None = None,
) -> None:
    """Sweep every ``every`` until ``stop`` is set; a database that is down is waited out."""
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            emit(once(cfg, options, stop=stop, on_result=on_result))
            failures = 0
            pause = every.total_seconds() - (time.monotonic() - started)
        except errors.DatabaseError as exc:
            failures += 1
            pause = min(every.total_seconds(), 2.0 * failures)
            log.warning("sweep failed: %s; trying again in %.0fs", exc, pause)
        stop.wait(max(pause, 0.0))


def _write_metrics(
    conn: db.Connection, cfg: config.Config, report: sweep.Report, now: dt.datetime
) -> None:
    from ordermon.ops import metrics, status

    assert cfg.metrics_textfile is not None
    directory = cfg.metrics_textfile.parent
    if not directory.is_dir():  # the operator's to create: ordermon makes no directory
        said = "is not a directory" if directory.exists() else "does not exist"
        report.problems.append(
            f"metrics.textfile: directory {directory} {said}, so no metrics written; "
            "create it (node_exporter's textfile collector directory) or change metrics.textfile"
        )
        return
    target = cfg.metrics_textfile
    if (target.exists() or target.is_symlink()) and not target.is_file():
        # The atomic rename would replace whatever is there: a directory, a device, a socket.
        report.problems.append(
            f"metrics.textfile: {target} exists and is not a regular file, so no metrics "
            "written; point metrics.textfile at a file of ordermon's own"
        )
        return
    figures = status.gather(conn, cfg, now, runs=0)
    names = {p.id: p.name for p in cfg.providers}
    text = metrics.render(
        figures,
        metrics.run_checks(conn, report.run_id, names),
        report.seconds,
        now,
        metrics.time_to_final(conn, now, names),
    )
    try:
        metrics.write(cfg.metrics_textfile, text)
    except OSError as exc:
        report.problems.append(
            f"cannot write metrics.textfile {cfg.metrics_textfile}: {exc.strerror}"
        )
