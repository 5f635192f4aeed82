"""Answers that could not be recorded: whether the database itself is unusable, a storable
reason for the failure, and the least that is written instead (an error attempt, the claim
released). `outcome` decides when; nothing here touches the shop's tables."""

import dataclasses
import datetime as dt
import logging
import re

import psycopg
import psycopg.errors

from ordermon import db
from ordermon.providers import base
from ordermon.sweep import store

log = logging.getLogger("ordermon.outcome")
# The trouble kept with an answer ordermon itself could not write (`show`: "not recorded").
UNRECORDED = "unrecorded"
_INT4_MAX = 2**31 - 1
# The database itself cannot be used (connection gone, read-only, schema or grants missing):
# every order would fail alike, so the sweep stops instead of turning them all into errors.
_UNUSABLE = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.ReadOnlySqlTransaction,
    # psycopg's prepared statements through a transaction pooler nobody declared
    psycopg.errors.DuplicatePreparedStatement,
    psycopg.errors.InvalidSqlStatementName,
)


@dataclasses.dataclass(frozen=True)
class Unrecorded:
    """An answer whose own write failed: recorded as an error (``kept``) or, when even that
    failed, left to its claim's lease."""

    index: int
    reason: str
    kept: bool


def unusable(conn: db.Connection, exc: BaseException) -> bool:
    """Whether a failure means the database cannot be used at all (not one order's doing)."""
    return isinstance(exc, _UNUSABLE) or conn.broken or conn.closed


def reason(exc: BaseException) -> str:
    """A short, storable name for a failure: the SQLSTATE's condition, or the exception's type.
    Never its text, which may quote the data (a PIN, a secret)."""
    sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None
    if sqlstate:
        words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).lower()
        return f"{words}, SQLSTATE {sqlstate}"
    return type(exc).__name__


def write_error(
    conn: db.Connection,
    claim: store.Claim,
    check: base.Check,
    run_id: int | None,
    now: dt.datetime,
    next_check: dt.datetime | None,
    counted: bool,
    why: str,
    trouble: str | None = None,
) -> str | None:
    """Release the claim as an error (expired when ``next_check`` is None) with a message of
    ordermon's own, and its attempt row without anything the provider sent. Returns the
    result, or None when even this failed (the claim then waits for its lease)."""
    message = f"could not record this answer ({why}): will retry"
    result = "error" if next_check is not None else "expired"
    state = "waiting" if next_check is not None else "expired"
    try:
        with conn.transaction():
            release = store.Release(claim, state, result, message, next_check, now, counted)
            if not store.release_claims(conn, [release]):
                result, counted = "superseded", False  # our lease ran out; another run took over
            if check.sent:
                attempt = store.Attempt(
                    claim,
                    run_id,
                    now,
                    "error",
                    result,
                    check.latency_ms if 0 <= check.latency_ms <= _INT4_MAX else None,
                    check.http_status if 100 <= (check.http_status or 0) <= 999 else None,
                    message,
                    None,
                    counted=counted,
                    trouble=trouble or (str(check.trouble) if check.trouble is not None else None),
                )
                store.insert_attempts(conn, [attempt])
    except Exception as again:
        if unusable(conn, again):
            raise
        log.warning(
            "could not record order %s (%s, then %s); its claim waits for the lease",
            claim.order_id,
            why,
            reason(again),
        )
        return None
    return result


def write_errors(
    conn: db.Connection,
    answers: list[tuple[store.Claim, base.Check, int | None, dt.datetime, dt.datetime]],
    exc: BaseException,
) -> None:
    """Each answer (claim, check, run, now, next check) as an error attempt that spends no
    attempt, while the connection still works; at the first that fails too, the rest wait
    for their lease."""
    if (
        conn.broken
        or conn.closed
        or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    ):
        return
    why = reason(exc)
    for claim, check, run_id, now, next_check in answers:
        try:
            write_error(conn, claim, check, run_id, now, next_check, False, why, UNRECORDED)
        except Exception:  # ordermon's own tables refuse too: nothing more to try
            return
