"""The command line: parse, load the config, call one core function, render, exit.

Only `OrdermonError` is caught here: its message is printed on one line and its exit code
returned. Heavy modules are imported inside the commands, so `--help` and an idle sweep stay
cheap.
"""

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from ordermon import errors

T = TypeVar("T")

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from ordermon import config, db, store
    from ordermon import sweep as sweeps
    from ordermon.providers import base

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Watch orders sent to providers and record their fate in the shop's database.",
)
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $ORDERMON_CONFIG, ./ordermon.yaml, /etc/ordermon/config.yaml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def main() -> None:
    try:
        app()
    except errors.OrdermonError as exc:  # raised outside a command (should not happen)
        _fail(exc)


def _fail(exc: errors.OrdermonError) -> NoReturn:
    sys.stderr.write(f"ordermon: {exc}\n")
    raise SystemExit(exc.exit_code)


@contextlib.contextmanager
def _expected_failures() -> Iterator[None]:
    from ordermon import db

    try:
        with db.translated_errors():
            yield
    except errors.OrdermonError as exc:
        _fail(exc)


def _setup_logging(verbose: bool, quiet: bool = False, log_format: str = "text") -> None:
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from ordermon import render

        handler.setFormatter(render.JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def _load_config(path: Path | None) -> "config.Config":
    from ordermon import config

    return config.load(config.find_path(path, os.environ))


def _connect(url: str) -> "db.Connection":
    from ordermon import db

    return db.connect(db.resolve_url(url), autocommit=True)


def _with_database(
    config_path: Path | None, work: "Callable[[config.Config, db.Connection], T]"
) -> T:
    """Load the config, connect, check the schema, and run ``work``; expected failures exit
    with their message and code."""
    from ordermon import sweep

    with _expected_failures():
        cfg = _load_config(config_path)
        with _connect(cfg.database_url) as conn:
            sweep.require_schema(conn)
            return work(cfg, conn)


@app.command()
def migrate(
    config_path: ConfigOption = None,
    print_sql: Annotated[
        bool, typer.Option("--print-sql", help="Print every statement instead of running it.")
    ] = False,
) -> None:
    """Create or upgrade ordermon's schema (safe to run again)."""
    from ordermon import migrate as migrations

    with _expected_failures():
        if print_sql:
            sys.stdout.write(migrations.script())
            return
        cfg = _load_config(config_path)
        with _connect(cfg.database_url) as conn:
            result = migrations.run(conn)
    if result.applied:
        typer.echo("applied: " + ", ".join(result.applied))
    else:
        typer.echo("ordermon's schema is up to date; nothing to do")


@app.command()
def sweep(
    config_path: ConfigOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Check at most N orders.")
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", help="Only this provider (by name); repeatable."),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="Loop mode: sweep every DURATION (e.g. 60s) until stopped."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say what happened.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text, or json: one JSON object per line on stderr.")
    ] = "text",
    as_json: JsonOption = False,
) -> None:
    """Enrol new dispatches, check the orders that are due, record what providers say."""
    import functools

    from ordermon import config, runner
    from ordermon import sweep as sweeps

    if log_format not in ("text", "json"):
        _fail(errors.UsageError(f"--log-format: expected text or json, got {log_format!r}"))
    _setup_logging(verbose, quiet, log_format)
    with _expected_failures():
        cfg = _load_config(config_path)
        options = sweeps.Options(limit=limit, provider_names=tuple(provider or ()))
        sweeps.selected_providers(cfg, options.provider_names)  # a bad --provider fails now
        interval = config.parse_duration(every, "--every") if every is not None else None
        if interval is not None and interval.total_seconds() <= 0:
            raise errors.UsageError("--every: must be longer than 0s")
        stop = _stop_on_signals()
        on_result = _result_printer(cfg) if verbose and not quiet else None
        emit = functools.partial(
            _emit, as_json=as_json, verbose=verbose, quiet=quiet, log_format=log_format
        )
        if interval is not None:
            runner.loop(cfg, options, interval, stop, emit, on_result=on_result)
            return
        show_progress = sys.stdout.isatty() and not (quiet or as_json or verbose)
        from ordermon import render

        with render.progress(enabled=show_progress) as progress:
            report = runner.once(cfg, options, stop=stop, on_result=on_result, progress=progress)
    emit(report)


def _stop_on_signals() -> "threading.Event":
    """SIGTERM or SIGINT: claim nothing more, finish the calls in flight, record, exit.
    A second signal stops at once."""
    import signal
    import threading

    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _result_printer(cfg: "config.Config") -> "sweeps.OnResult":
    from ordermon import render

    def on_result(claim: "store.Claim", check: "base.Check", applied: str) -> None:
        provider = cfg.provider_by_id(claim.provider_id)
        typer.echo(
            render.attempt_line(
                str(claim.order_id),
                provider.name if provider else claim.provider_id,
                str(check.answer.outcome),
                applied,
                check.answer.message or "",
            )
        )

    return on_result


def _emit(
    report: "sweeps.Report", *, as_json: bool, verbose: bool, quiet: bool, log_format: str
) -> None:
    """What a finished sweep prints: nothing on success without a terminal, unless asked."""
    import json

    from ordermon import render

    data = report.as_dict()
    if log_format == "json":
        sys.stderr.write(json.dumps({"event": "sweep", **data}, default=str) + "\n")
    elif not quiet:
        for problem in report.problems:  # one line per provider and run: cron mails it
            sys.stderr.write(f"ordermon: warning: {problem}\n")
    if as_json:
        render.print_json(data)
    elif not quiet and (verbose or sys.stdout.isatty()):
        typer.echo(render.sweep_summary(data))
    sys.stdout.flush()


@app.command()
def check(
    order_id: Annotated[str, typer.Argument(help="The order's id (product_orders.id).")],
    config_path: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Ask the provider, show the answer, write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ask the provider about one order now, whatever its schedule, and record the answer."""
    from ordermon import check as checks
    from ordermon import render

    with _expected_failures():
        cfg = _load_config(config_path)
        with _connect(cfg.database_url) as conn:
            result = checks.run(conn, cfg, order_id, dry_run=dry_run)
    if as_json:
        render.print_json(result.as_dict())
    else:
        render.check_result(result.as_dict())


@app.command()
def status(
    config_path: ConfigOption = None,
    runs: Annotated[int, typer.Option("--runs", min=0, help="How many recent runs to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """The picture at a glance. Exits 3 when something needs a person."""
    from ordermon import render, sweep
    from ordermon import status as statuses

    figures = _with_database(
        config_path, lambda cfg, conn: statuses.gather(conn, cfg, sweep.utc_now(), runs=runs)
    )
    if as_json:
        render.print_json(figures)
    else:
        render.status_view(figures)
    if figures["attention"]:
        raise typer.Exit(3)


@app.command()
def show(
    order_id: Annotated[str, typer.Argument(help="The order's id (product_orders.id).")],
    config_path: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One order: the columns that matter, its schedule, and every attempt."""
    from ordermon import render, sweep, timeline

    picture = _with_database(
        config_path, lambda cfg, conn: timeline.gather(conn, cfg, order_id, sweep.utc_now())
    )
    if as_json:
        render.print_json(picture)
    else:
        render.order_view(picture)


@app.command()
def requeue(
    order_ids: Annotated[
        list[str] | None, typer.Argument(help="Orders to requeue.", show_default=False)
    ] = None,
    config_path: ConfigOption = None,
    expired: Annotated[bool, typer.Option("--expired", help="Every expired order.")] = False,
    provider: Annotated[
        str | None, typer.Option("--provider", help="With --expired: only this provider.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Give expired or held orders a fresh schedule (attempts from zero, new deadline)."""
    from ordermon import render, sweep
    from ordermon import requeue as requeues

    with _expected_failures():
        if not order_ids and not expired:
            raise errors.UsageError("name the ORDER_IDs to requeue, or use --expired")
        if order_ids and expired:
            raise errors.UsageError("give ORDER_IDs or --expired, not both")
    decisions = _with_database(
        config_path,
        lambda cfg, conn: requeues.run(
            conn,
            cfg,
            order_ids or [],
            expired=expired,
            provider_name=provider,
            dry_run=dry_run,
            now=sweep.utc_now(),
        ),
    )
    if as_json:
        render.print_json([d.__dict__ for d in decisions])
    else:
        if not decisions:
            typer.echo("nothing to requeue")
        for decision in decisions:
            mark = "ok" if decision.requeued else "refused"
            typer.echo(f"{decision.order_id}: {mark}: {decision.why}")
    if any(not d.requeued for d in decisions):
        raise typer.Exit(1)


@app.command()
def deliver(config_path: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Deliver due order events to the configured webhooks (a sweep does this too)."""
    from ordermon import render, sweep, webhooks

    report = _with_database(
        config_path, lambda cfg, conn: webhooks.deliver(conn, cfg, sweep.utc_now)
    )
    if as_json:
        render.print_json(report.as_dict())
    else:
        typer.echo(f"{report.delivered} delivered, {report.retried} to retry, {report.dead} dead")


events_app = typer.Typer(no_args_is_help=True, help="Order events and their webhook deliveries.")
app.add_typer(events_app, name="events")


@events_app.command("list")
def events_list(
    config_path: ConfigOption = None,
    dead: Annotated[bool, typer.Option("--dead", help="Only dead deliveries.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N rows.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The latest events, with their delivery to each webhook."""
    from ordermon import outbox, render

    rows = _with_database(
        config_path, lambda cfg, conn: outbox.events(conn, dead_only=dead, limit=limit)
    )
    if as_json:
        render.print_json(rows)
    else:
        render.events_table(rows)


@events_app.command("redeliver")
def events_redeliver(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids.")] = None,
    config_path: ConfigOption = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead delivery.")] = False,
) -> None:
    """Deliver events again: the given ones, or every dead one."""
    import uuid

    from ordermon import outbox, sweep

    with _expected_failures():
        if bool(event_ids) == dead:
            raise errors.UsageError("give event ids or --dead (one of them)")
        try:
            ids = [uuid.UUID(e) for e in event_ids] if event_ids else None
        except ValueError:
            raise errors.UsageError("event ids are UUIDs (see `ordermon events list`)") from None
    count = _with_database(
        config_path, lambda cfg, conn: outbox.redeliver(conn, ids, sweep.utc_now())
    )
    typer.echo(f"{count} deliveries will be sent again at the next sweep or `ordermon deliver`")


@app.command("providers")
def providers_(
    config_path: ConfigOption = None,
    probe: Annotated[
        bool, typer.Option("--probe", help="Send each provider one harmless check.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the configured providers: kind, address, limits, pause state, recent errors."""
    from ordermon import render, roster, sweep

    with _expected_failures():
        cfg = _load_config(config_path)
        try:
            conn: db.Connection | None = _connect(cfg.database_url)
        except errors.DatabaseError as exc:
            sys.stderr.write(f"ordermon: {exc} (showing the configuration only)\n")
            conn = None
        try:
            listing = roster.rows(cfg, conn, sweep.utc_now(), probe=probe)
        finally:
            if conn is not None:
                conn.close()
    if as_json:
        render.print_json([row.as_dict() for row in listing])
    else:
        render.provider_table([row.as_dict() for row in listing])
    if probe and not all(row.probe_ok for row in listing):
        raise typer.Exit(1)


@app.command()
def demo(
    orders: Annotated[int, typer.Option("--orders", min=1, max=500, help="How many orders.")] = 36,
) -> None:
    """The whole loop on a private PostgreSQL and a simulated provider; needs no setup."""
    from ordermon import demo as demos

    with _expected_failures():
        demos.run(orders)
