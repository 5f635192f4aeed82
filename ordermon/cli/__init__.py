"""The command line: parse, load the config, call one core function, render, exit.

Only `OrdermonError` is caught here: its message is printed on one line and its exit code
returned. Heavy modules are imported inside the commands, so `--help` and an idle sweep stay
cheap.
"""

import atexit
import gc
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ordermon import errors
from ordermon.cli import dev as cli_dev
from ordermon.cli import events as cli_events
from ordermon.cli import operator as cli_operator
from ordermon.cli import report as cli_report
from ordermon.cli import support

if TYPE_CHECKING:
    import threading

    from ordermon import config
    from ordermon.providers import base
    from ordermon.sweep import store
    from ordermon.sweep import sweep as sweeps

MAX_ARGUMENT = 4096  # PATH_MAX

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Watch orders sent to providers and record their fate in the shop's database.",
)


def _print_version(value: bool) -> None:
    """`--version`: the installed package's version, from its metadata."""
    if value:
        import importlib.metadata

        typer.echo(f"ordermon {importlib.metadata.version('ordermon')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print ordermon's version and exit.",
        ),
    ] = False,
) -> None:
    """Watch orders sent to providers and record their fate in the shop's database."""


def main() -> None:
    # On its way out the interpreter garbage-collects every object that starting up created,
    # a walk that costs an idle sweep (cron starts one a minute) about a seventh of its time
    # and frees nothing that matters then. Freezing the heap at exit skips it; the other exit
    # handlers (logging's flush) and the closing of files and connections still run.
    atexit.register(gc.freeze)
    # Whatever text reaches stdout, encoding it never raises (render escapes what it shows;
    # this is the net under it).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        _bounded_arguments(sys.argv[1:])
        app()
    except errors.OrdermonError as exc:  # raised outside a command
        support.fail(exc)


def _bounded_arguments(arguments: list[str]) -> None:
    """No argument ordermon takes is longer than a path; a longer one is refused before the
    parser echoes it whole in its own messages."""
    for position, argument in enumerate(arguments, 1):
        if len(argument) > MAX_ARGUMENT:
            raise errors.UsageError(
                f"argument {position} is {len(argument)} characters long; none of ordermon's "
                f"arguments needs more than {MAX_ARGUMENT}"
            )


@app.command()
def migrate(
    config_path: support.ConfigOption = None,
    print_sql: Annotated[
        bool, typer.Option("--print-sql", help="Print every statement instead of running it.")
    ] = False,
) -> None:
    """Create or upgrade ordermon's schema (safe to run again)."""
    from ordermon import migrate as migrations

    with support.expected_failures():
        if print_sql:
            sys.stdout.write(migrations.script())
            return
        cfg = support.load_config(config_path)
        with support.connect_for_migrate(cfg) as conn:
            result = migrations.run(conn)
        if cfg.database_migrate_url is not None:
            # migrate_url may be another role's (a managed database's admin): what matters
            # is what the role of database.url, the one every other command uses, may do.
            with support.connect(cfg) as conn:
                migrations.require_grants(conn, result.applied)
    if result.applied:
        typer.echo("applied: " + ", ".join(result.applied))
    else:
        typer.echo("ordermon's schema is up to date; nothing to do")


@app.command()
def sweep(
    config_path: support.ConfigOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=1_000_000, help="Check at most N orders.")
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
    as_json: support.JsonOption = False,
) -> None:
    """Enrol new dispatches, check the orders that are due, record what providers say."""
    import functools

    from ordermon import config
    from ordermon.sweep import runner
    from ordermon.sweep import sweep as sweeps

    if log_format not in ("text", "json"):
        support.fail(errors.UsageError(f"--log-format: expected text or json, got {log_format!r}"))
    support.setup_logging(verbose, quiet, log_format)
    with support.expected_failures():
        cfg = support.load_config(config_path)
        support.log_times_in(cfg.timezone)
        options = sweeps.Options(limit=limit, provider_names=tuple(provider or ()))
        support.known_providers(cfg, options.provider_names)  # a bad --provider fails now
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
        from ordermon.cli import render

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
    from ordermon.cli import render

    def on_result(claim: "store.Claim", check: "base.Check | None", applied: str) -> None:
        provider = cfg.provider_by_id(claim.provider_id)
        name = provider.name if provider else claim.provider_id
        typer.echo(render.attempt_line(str(claim.order_id), name, check, applied))

    return on_result


def _emit(
    report: "sweeps.Report", *, as_json: bool, verbose: bool, quiet: bool, log_format: str
) -> None:
    """What a finished sweep prints: nothing on success without a terminal, unless asked."""
    import json

    from ordermon.cli import render

    data = report.as_dict()
    if log_format == "json":
        sys.stderr.write(json.dumps({"event": "sweep", **data}, default=str) + "\n")
    elif not quiet:
        for problem in report.problems:  # one line per provider and run: cron mails it
            support.warn(f"warning: {render.shown(problem)}")
    if as_json:
        render.print_json(data)
    elif not quiet and (verbose or sys.stdout.isatty()):
        typer.echo(render.sweep_summary(data))
    sys.stdout.flush()


@app.command()
def check(
    order_id: support.OrderArgument,
    config_path: support.ConfigOption = None,
    tenant: support.TenantOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Ask the provider, show the answer, write nothing; exit 1 if it is an error.",
        ),
    ] = False,
    show_pin: Annotated[
        bool,
        typer.Option(
            "--show-pin", help="Show the whole PIN (else a fixed mask and at most its last 4)."
        ),
    ] = False,
    as_json: support.JsonOption = False,
) -> None:
    """Ask the provider about one order now, whatever its schedule, and record the answer."""
    from ordermon.cli import render
    from ordermon.ops import check as checks

    with support.expected_failures():
        given, tenant_id = support.order_id(order_id), support.tenant_id(tenant)
        cfg = support.load_config(config_path)
        with support.connect(cfg) as conn:
            [order_id] = support.resolve_orders(conn, [given], tenant_id)
            result = checks.run(conn, cfg, order_id, dry_run=dry_run)
    if as_json:
        render.print_json(render.masked_check(result.as_dict(), show_pin))
    else:
        render.check_result(result.as_dict(), show_pin)
    if dry_run and str(result.check.answer.outcome) == "error":
        # Nothing was learned and nothing recorded: the provider could not be asked (exit 1,
        # an operational failure). A recorded `error` is retried like a sweep's: exit 0.
        raise typer.Exit(1)


DEMO_REPORT = Path("ordermon-demo-report.html")


@app.command()
def demo(
    orders: Annotated[int, typer.Option("--orders", min=1, max=500, help="How many orders.")] = 36,
    report: Annotated[
        Path,
        typer.Option(
            "--report",
            metavar="PATH",
            help="Where the demo writes its report page (ordermon report --html).",
        ),
    ] = DEMO_REPORT,
) -> None:
    """The whole loop on a private PostgreSQL and a simulated provider; needs no setup."""
    from ordermon.dev import demo as demos
    from ordermon.ops import report_html

    with support.expected_failures():
        report_html.check_target(report, "--report")  # before the demo, not after it
        demos.run(orders, report)


# The operators' and the outbox's commands live in modules of their own.
app.registered_commands.extend(cli_operator.app.registered_commands)
app.registered_commands.extend(cli_events.app.registered_commands)
app.registered_groups.extend(cli_events.app.registered_groups)
app.registered_commands.extend(cli_dev.app.registered_commands)
app.registered_commands.extend(cli_report.app.registered_commands)
