"""The commands of the outbox: deliver events now, list them, send them again."""

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ordermon import errors
from ordermon.cli import support

if TYPE_CHECKING:
    from ordermon import config, db

app = typer.Typer()


@app.command()
def deliver(config_path: support.ConfigOption = None, as_json: support.JsonOption = False) -> None:
    """Deliver due order events to the configured webhooks (a sweep does this too)."""
    from ordermon.cli import render
    from ordermon.events import webhooks
    from ordermon.sweep import sweep

    report = support.with_database(
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
    config_path: support.ConfigOption = None,
    dead: Annotated[bool, typer.Option("--dead", help="Only dead deliveries.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most N rows.")] = 50,
    as_json: support.JsonOption = False,
) -> None:
    """The latest events, with their delivery to each webhook."""
    from ordermon.cli import render
    from ordermon.config import human
    from ordermon.events import outbox

    def work(cfg: "config.Config", conn: "db.Connection") -> list[dict[str, Any]]:
        rows = outbox.events(conn, dead_only=dead, limit=limit)
        return [  # times as ISO-8601 in the configured zone, as every command's JSON
            {
                k: human.iso(v, cfg.timezone) if isinstance(v, dt.datetime) else v
                for k, v in r.items()
            }
            for r in rows
        ]

    rows = support.with_database(config_path, work)
    if as_json:
        render.print_json(rows)
    else:
        render.events_table(rows)


@events_app.command("redeliver")
def events_redeliver(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids.")] = None,
    config_path: support.ConfigOption = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead delivery.")] = False,
) -> None:
    """Deliver events again: the given ones, or every dead one."""
    import uuid

    from ordermon.events import outbox
    from ordermon.sweep import sweep

    with support.expected_failures():
        if bool(event_ids) == dead:
            raise errors.UsageError("give event ids or --dead (one of them)")
        try:
            ids = [uuid.UUID(e) for e in event_ids] if event_ids else None
        except ValueError:
            raise errors.UsageError("event ids are UUIDs (see `ordermon events list`)") from None

    def work(cfg: "config.Config", conn: "db.Connection") -> int:
        missing = outbox.unknown(conn, ids) if ids else []
        if missing:  # before any is changed: a typo in one id changes nothing
            named = ", ".join(str(event) for event in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise errors.OrderError(
                f"no event {named}{more}; nothing was sent again (see `ordermon events list`)"
            )
        return outbox.redeliver(conn, ids, sweep.utc_now())

    count = support.with_database(config_path, work)
    from ordermon.config import human

    again = human.plural(count, "delivery", "deliveries")
    typer.echo(f"{again} will be sent again at the next sweep or `ordermon deliver`")
