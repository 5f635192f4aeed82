"""What every command shares: the common options, the one place that turns expected failures
into a message and an exit code, logging, and loading the config and the database."""

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
    from collections.abc import Callable

    from ordermon import config, db

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


def fail(exc: errors.OrdermonError) -> NoReturn:
    sys.stderr.write(f"ordermon: {exc}\n")
    raise SystemExit(exc.exit_code)


@contextlib.contextmanager
def expected_failures() -> Iterator[None]:
    from ordermon import db

    try:
        with db.translated_errors():
            yield
    except errors.OrdermonError as exc:
        fail(exc)


def setup_logging(verbose: bool, quiet: bool = False, log_format: str = "text") -> None:
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from ordermon import render

        handler.setFormatter(render.JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def load_config(path: Path | None) -> "config.Config":
    from ordermon import config

    return config.load(config.find_path(path, os.environ))


def connect(url: str) -> "db.Connection":
    from ordermon import db

    return db.connect(db.resolve_url(url), autocommit=True)


def with_database(
    config_path: Path | None, work: "Callable[[config.Config, db.Connection], T]"
) -> T:
    """Load the config, connect, check the schema, and run ``work``; expected failures exit
    with their message and code."""
    from ordermon import sweep

    with expected_failures():
        cfg = load_config(config_path)
        with connect(cfg.database_url) as conn:
            sweep.require_schema(conn)
            return work(cfg, conn)
