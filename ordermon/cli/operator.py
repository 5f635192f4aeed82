"""The commands for the people who run ordermon: status, show, requeue, providers."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ordermon import errors
from ordermon.cli import support

if TYPE_CHECKING:
    from ordermon import config, db
    from ordermon.ops import requeue as requeues

app = typer.Typer()


@app.command()
def status(
    config_path: support.ConfigOption = None,
    runs: Annotated[
        int, typer.Option("--runs", min=0, max=1000, help="How many recent runs to list.")
    ] = 10,
    as_json: support.JsonOption = False,
) -> None:
    """The picture at a glance. Exits 3 when something needs a person."""
    from ordermon.cli import render
    from ordermon.ops import status as statuses
    from ordermon.sweep import sweep

    figures = support.with_database(
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
    order_id: support.OrderArgument,
    config_path: support.ConfigOption = None,
    tenant: support.TenantOption = None,
    as_json: support.JsonOption = False,
) -> None:
    """One order: the columns that matter, its schedule, and every attempt."""
    from ordermon.cli import render
    from ordermon.cli import timeline as cli_timeline
    from ordermon.ops import timeline
    from ordermon.sweep import sweep

    with support.expected_failures():
        given, tenant_id = support.order_id(order_id), support.tenant_id(tenant)

    def work(cfg: "config.Config", conn: "db.Connection") -> dict[str, Any]:
        [resolved] = support.resolve_orders(conn, [given], tenant_id)
        return timeline.gather(conn, cfg, resolved, sweep.utc_now())

    picture = support.with_database(config_path, work)
    if as_json:
        render.print_json(picture)
    else:
        cli_timeline.order_view(picture)


@app.command()
def requeue(
    order_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help='Orders to requeue, by id (a UUID) or number ("orderNo").', show_default=False
        ),
    ] = None,
    config_path: support.ConfigOption = None,
    tenant: support.TenantOption = None,
    expired: Annotated[bool, typer.Option("--expired", help="Every expired order.")] = False,
    provider: Annotated[
        str | None, typer.Option("--provider", help="With --expired: only this provider.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen.")] = False,
    as_json: support.JsonOption = False,
) -> None:
    """Give expired or held orders a fresh schedule (attempts from zero, new deadline)."""
    from ordermon.cli import render
    from ordermon.ops import requeue as requeues
    from ordermon.sweep import sweep

    with support.expected_failures():
        if not order_ids and not expired:
            raise errors.UsageError("name the ORDER_IDs to requeue, or use --expired")
        if order_ids and expired:
            raise errors.UsageError("give ORDER_IDs or --expired, not both")
        given = [support.order_id(order_id) for order_id in order_ids or []]
        tenant_id = support.tenant_id(tenant)

    def work(cfg: "config.Config", conn: "db.Connection") -> "list[requeues.Decision]":
        support.known_providers(cfg, [provider] if provider is not None else [])
        return requeues.run(
            conn,
            cfg,
            support.resolve_orders(conn, given, tenant_id),
            expired=expired,
            provider_name=provider,
            dry_run=dry_run,
            now=sweep.utc_now(),
        )

    decisions = support.with_database(config_path, work)
    if as_json:
        render.print_json([d.__dict__ for d in decisions])
    else:
        if not decisions:
            typer.echo("nothing to requeue")
        for decision in decisions:
            mark = "ok" if decision.requeued else "refused"
            typer.echo(render.shown(f"{decision.order_id}: {mark}: {decision.why}"))
    if any(not d.requeued for d in decisions):
        raise typer.Exit(1)


@app.command("providers")
def providers_(
    config_path: support.ConfigOption = None,
    probe: Annotated[
        bool, typer.Option("--probe", help="Send each provider one harmless check.")
    ] = False,
    as_json: support.JsonOption = False,
) -> None:
    """List the configured providers: kind, address, limits, pause state, recent errors."""
    from ordermon.cli import render
    from ordermon.ops import roster
    from ordermon.sweep import sweep

    with support.expected_failures():
        cfg = support.load_config(config_path)
        try:
            conn: db.Connection | None = support.connect(cfg)
        except errors.DatabaseError as exc:
            support.warn(f"{exc} (showing the configuration only)")
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
