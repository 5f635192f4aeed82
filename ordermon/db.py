"""Connections to the shop's database, and the translation of database failures into errors
that say what to do."""

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import psycopg.rows

from ordermon import errors

Connection = psycopg.Connection[dict[str, Any]]
EMBEDDED = "embedded"


def resolve_url(url: str) -> str:
    """Turn ``embedded`` into the URI of the private PostgreSQL, starting it if needed."""
    if url.strip() != EMBEDDED:
        return url
    from ordermon import embedded  # only this mode pays for importing it

    return embedded.start(embedded.default_data_dir())


def redact_url(url: str) -> str:
    """The URL without its password, fit for an error message."""
    url = re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", url, flags=re.IGNORECASE)


def connect(url: str, *, autocommit: bool = False) -> Connection:
    """Open a connection; a refusal becomes a DatabaseError naming the (redacted) target."""
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            row_factory=psycopg.rows.dict_row,
            connect_timeout=10,
            application_name="ordermon",
        )
    except psycopg.Error as exc:
        reason = _first_line(str(exc)) or type(exc).__name__
        raise errors.DatabaseError(
            f"cannot connect to the database at {redact_url(url)}: {reason}. "
            "Check that PostgreSQL is running and that database.url (or "
            "ORDERMON_DATABASE_URL) is right."
        ) from None


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Turn the database failures an operator can fix into OrdermonErrors (by SQLSTATE)."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise errors.DatabaseError(
            f"the database refused ordermon's role: {_diag(exc)}. Grant it SELECT, INSERT, "
            "UPDATE on product_orders, users, wallet_transactions and the ordermon_ tables."
        ) from None
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise errors.DatabaseError(
            f"the database lacks something ordermon needs: {_diag(exc)}. "
            "Run `ordermon migrate` (it is safe to run again)."
        ) from None
    except psycopg.errors.TransactionRollback as exc:
        raise errors.DatabaseError(
            f"the database aborted a transaction ({_diag(exc)}); nothing of it was kept: "
            "run the command again"
        ) from None
    except psycopg.OperationalError as exc:
        raise errors.DatabaseError(
            f"lost the database connection: {_first_line(str(exc)) or type(exc).__name__}. "
            "Work already committed is kept; claimed orders return after their lease."
        ) from None


def sql_dir() -> Path:
    """The numbered migration files: inside the installed package, or beside it in a checkout."""
    packaged = Path(__file__).with_name("sql")
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "sql"


def platform_schema() -> str:
    """The shop's own tables (a copy of the reference schema), for the demo and the tests."""
    return Path(__file__).with_name("platform-schema.sql").read_text(encoding="utf-8")


def _diag(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or _first_line(str(exc))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
