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
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ordermon import errors

if TYPE_CHECKING:
    from ordermon import config, db, store
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


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load_config(path: Path | None) -> "config.Config":
    from ordermon import config

    return config.load(config.find_path(path, os.environ))


def _connect(url: str) -> "db.Connection":
    from ordermon import db

    return db.connect(db.resolve_url(url), autocommit=True)


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say what happened.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Enrol new dispatches, check the orders that are due, record what providers say."""
    from ordermon import sweep as sweeps

    _setup_logging(verbose)
    on_result = None
    if verbose:
        from ordermon import render

        def on_result(claim: "store.Claim", check: "base.Check", applied: str) -> None:
            provider = cfg.provider_by_id(claim.provider_id)
            line = render.attempt_line(
                str(claim.order_id),
                provider.name if provider else claim.provider_id,
                str(check.answer.outcome),
                applied,
                check.answer.message or "",
            )
            typer.echo(line)

    with _expected_failures():
        cfg = _load_config(config_path)
        options = sweeps.Options(limit=limit, provider_names=tuple(provider or ()))
        with _connect(cfg.database_url) as conn:
            report = sweeps.run(conn, cfg, options, on_result=on_result)
    for problem in report.problems:  # one line per provider and run: cron mails it
        sys.stderr.write(f"ordermon: warning: {problem}\n")
    if as_json:
        from ordermon import render

        render.print_json(report.as_dict())
    elif verbose or sys.stdout.isatty():
        from ordermon import render

        typer.echo(render.sweep_summary(report.as_dict()))


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
