"""What every command shares: the common options, the one place that turns expected failures
into a message and an exit code, logging, and loading the config and the database."""

import contextlib
import datetime as dt
import json
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
    import uuid
    from collections.abc import Callable, Sequence

    from ordermon import config, db
    from ordermon.ops import orders

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
OrderArgument = Annotated[
    str, typer.Argument(help='The order\'s id (product_orders.id) or its number ("orderNo").')
]
TenantOption = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        help='With an order number: the tenant ("tenantId") whose order it is, when several '
        "tenants use that number.",
        show_default=False,
    ),
]
# The longest message ever printed: every message quoting outside text cuts it itself; this
# is the net for whatever one forgot (ordermon's longest, the owner's statements of
# `migrate`, is far shorter).
MAX_MESSAGE = 4000


def fail(exc: errors.OrdermonError) -> NoReturn:
    warn(str(exc))
    raise SystemExit(exc.exit_code)


def warn(message: str) -> None:
    """A message on stderr (cron mails it), escaped and bounded: every message goes here. The
    line breaks of ordermon's own multi-line messages stay; everything else is escaped."""
    from ordermon.cli import render

    lines = message[:MAX_MESSAGE].split("\n")
    text = "\n".join(render.shown(line) for line in lines)
    cut = "…" if len(message) > MAX_MESSAGE else ""
    sys.stderr.write(f"ordermon: {text}{cut}\n")


def order_id(value: str) -> "orders.Given":
    """ORDER_ID as given: an order id (a UUID) or an order number ("orderNo"), checked before
    any config or database is touched, and echoed cut and escaped when it is neither."""
    from ordermon.ops import orders

    return orders.parse(value, "ORDER_ID")


def tenant_id(value: str | None) -> "uuid.UUID | None":
    """``--tenant`` as given, once it is known to be a UUID (checked before the database)."""
    from ordermon.ops import orders

    return orders.parse_tenant(value)


def resolve_orders(
    conn: "db.Connection", given: "Sequence[orders.Given]", tenant: "uuid.UUID | None"
) -> list[str]:
    """The ids of the orders given by id or number (``--tenant`` picks among tenants)."""
    from ordermon.ops import orders

    # Each order once, in the order given: a number and its own id name one order.
    return list(dict.fromkeys(orders.resolve(conn, one, tenant) for one in given))


def known_providers(cfg: "config.Config", names: "Sequence[str]") -> None:
    """Every ``--provider`` NAME is configured; a name that is not is echoed cut."""
    from ordermon.config import validate

    for name in names:
        if cfg.provider_by_name(name) is None:
            known = ", ".join(p.name for p in cfg.providers) or "none configured"
            raise errors.UsageError(
                f"--provider {validate.cut(name)}: no such provider (configured: "
                f"{validate.cut(known) if len(known) > 200 else known})"
            )


@contextlib.contextmanager
def expected_failures() -> Iterator[None]:
    from ordermon import db

    try:
        with db.translated_errors():
            yield
    except errors.OrdermonError as exc:
        fail(exc)


# The zone log lines show their time in: the config's, once it is loaded (None: the host's).
_log_zone: str | None = None


def log_times_in(zone: str) -> None:
    """From now on, log lines carry their time in ``zone`` (the config's ``timezone``)."""
    global _log_zone
    _log_zone = zone


def _logged_at(record: logging.LogRecord) -> dt.datetime:
    import zoneinfo

    at = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return at.astimezone(zoneinfo.ZoneInfo(_log_zone)) if _log_zone else at.astimezone()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (json.dumps escapes every control
    character and all non-ASCII text); its time is ISO-8601 with the offset."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": _logged_at(record).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


class TextLogFormatter(logging.Formatter):
    """The plain log line, with control characters of the quoted text escaped: a provider's
    words can neither steer the terminal nor forge another log line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from ordermon.cli import render

        return render.shown(super().formatMessage(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        from ordermon.config import human

        return human.moment(_logged_at(record))


def setup_logging(verbose: bool, quiet: bool = False, log_format: str = "text") -> None:
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(TextLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def load_config(path: Path | None) -> "config.Config":
    from ordermon import config

    return config.load(config.find_path(path, os.environ))


def connect(cfg: "config.Config") -> "db.Connection":
    """The connection every command but `migrate` works on (through a pooler, if any)."""
    from ordermon import db

    return db.connect(
        db.resolve_url(cfg.database_url), autocommit=True, pooling=cfg.database_pooler
    )


def connect_for_migrate(cfg: "config.Config") -> "db.Connection":
    """The direct connection `migrate` needs: database.migrate_url when given, else
    database.url unless that goes through a transaction pooler."""
    from ordermon import db, pooler

    if cfg.database_migrate_url is not None:
        return db.connect(
            db.resolve_url(cfg.database_migrate_url),
            autocommit=True,
            setting="database.migrate_url",
        )
    refusal = pooler.migration_refusal(cfg.database_pooler)
    if refusal:
        raise errors.MigrationError(refusal)
    return connect(cfg)


def with_database(
    config_path: Path | None, work: "Callable[[config.Config, db.Connection], T]"
) -> T:
    """Load the config, connect, check the schema, and run ``work``; expected failures exit
    with their message and code."""
    from ordermon.sweep import sweep

    with expected_failures():
        cfg = load_config(config_path)
        with connect(cfg) as conn:
            sweep.require_schema(conn)
            return work(cfg, conn)
