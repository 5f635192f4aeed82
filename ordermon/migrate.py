"""Apply the numbered files of ``sql/`` under an advisory lock, each recorded once.

A file of ordermon's own tables runs in one transaction with its row in
``ordermon_migrations``. A file marked ``-- ordermon: shop-table`` touches the shop's tables: its
statements run one by one outside a transaction with a short lock_timeout, and the file counts
as applied once the catalog shows every object it creates, whoever created them. That is how a
DBA who owns ``product_orders`` can run those statements by hand and let ordermon finish.
"""

import dataclasses
import re
import time
from pathlib import Path

import psycopg
import psycopg.errors
from psycopg import sql

from ordermon import db, errors, pooler

# Any constant will do; it only has to be the same for every ordermon.
ADVISORY_LOCK_KEY = 0x6F72_6465_726D_6F6E  # "ordermon"
SHOP_TABLE_MARK = "-- ordermon: shop-table"
LOCK_TIMEOUT = "5s"
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_ADD_COLUMN = re.compile(
    r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", re.IGNORECASE | re.DOTALL
)
_CREATE_INDEX = re.compile(
    r"CREATE (?:UNIQUE )?INDEX CONCURRENTLY IF NOT EXISTS (\w+)\s+ON (\w+)",
    re.IGNORECASE | re.DOTALL,
)
_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS ordermon_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def shop_table(self) -> bool:
        return self.text.lstrip().startswith(SHOP_TABLE_MARK)

    def statements(self) -> list[str]:
        """The statements of a shop-table file (plain DDL, no bodies with semicolons)."""
        lines = [line for line in self.text.splitlines() if not line.lstrip().startswith("--")]
        return [s.strip() + ";" for s in "\n".join(lines).split(";") if s.strip()]


@dataclasses.dataclass(frozen=True)
class Result:
    applied: tuple[str, ...]


def migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files in version order; a misnamed file is a packaging bug, said loudly."""
    directory = directory or db.sql_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise errors.MigrationError(f"{path}: migration files are named NNN_name.sql")
        found.append(Migration(int(match.group(1)), path.stem, path.read_text(encoding="utf-8")))
    return found


def latest_version() -> int:
    return max(m.version for m in migrations())


def script() -> str:
    """Everything `migrate` would run, for `--print-sql`."""
    parts = [f"-- ordermon schema, {len(migrations())} migration files\n", _BOOTSTRAP.strip() + ";"]
    for migration in migrations():
        parts.append(f"\n-- {migration.name}")
        if migration.shop_table:
            parts.append("-- (each statement on its own, outside a transaction)")
            parts.extend(migration.statements())
        else:
            parts.append("BEGIN;\n" + migration.text.strip())
            parts.append(
                "INSERT INTO ordermon_migrations (version, name) "
                f"VALUES ({migration.version}, '{migration.name}');\nCOMMIT;"
            )
    return "\n".join(parts) + "\n"


def run(conn: db.Connection) -> Result:
    """Apply what is missing. ``conn`` must be in autocommit mode (CONCURRENTLY needs it)."""
    exists = conn.execute("SELECT to_regclass('product_orders') IS NOT NULL AS ok").fetchone()
    if not exists or not exists["ok"]:
        raise errors.MigrationError(
            "this database has no product_orders table: point database.url at the shop's "
            "database (ordermon adds to the shop's tables, it does not create them)"
        )
    refusal = pooler.migration_refusal(db.pooling_of(conn))
    if refusal:
        raise errors.MigrationError(refusal)
    applied: list[str] = []
    _lock(conn)
    try:
        _check_session_kept(conn)
        conn.execute(_BOOTSTRAP)
        done = {row["version"] for row in conn.execute("SELECT version FROM ordermon_migrations")}
        for migration in migrations():
            if migration.version in done:
                continue
            if migration.shop_table:
                _apply_shop_file(conn, migration)
            else:
                _apply_file(conn, migration)
            applied.append(migration.name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": ADVISORY_LOCK_KEY})
    require_grants(conn, applied)
    return Result(tuple(applied))


def require_grants(conn: db.Connection, applied: list[str] | tuple[str, ...] = ()) -> None:
    """Refuse, listing the statements that fix it, when ``conn``'s role lacks what a sweep
    needs (``applied``: what this migrate applied, for the message)."""
    lacking = db.lacking_grants(conn)
    if lacking:
        # Found now, not at the first refund: that sweep would stop with its claims held.
        applied_now = f" (applied {', '.join(applied)})" if applied else ""
        raise errors.MigrationError(
            f"ordermon's schema is up to date{applied_now}, but its role cannot "
            "record every outcome yet. It lacks:\n"
            + "\n".join("    " + line for line in lacking)
            + "\nRun these, then `ordermon migrate` again to check."
        )


def _lock(conn: db.Connection, wait_seconds: float = 600.0) -> None:
    """Take the advisory lock by polling, never by a blocking wait: a session blocked inside
    pg_advisory_lock() holds a transaction open, and the holder's CREATE INDEX CONCURRENTLY
    would wait for that transaction: a deadlock."""
    deadline = time.monotonic() + wait_seconds
    while True:
        row = conn.execute(_TRY_LOCK, {"key": ADVISORY_LOCK_KEY}).fetchone()
        if row and row["ok"] is None:
            raise errors.MigrationError(_UNDECLARED_POOLER)
        if row and row["ok"]:
            return
        if time.monotonic() > deadline:
            raise errors.MigrationError(
                f"another `ordermon migrate` has held the migration lock for {wait_seconds:g}s; "
                "wait for it to finish, then run this again"
            )
        time.sleep(0.2)


# The bigint key of a session advisory lock shows in pg_locks as classid (its high 32 bits),
# objid (its low 32 bits) and objsubid 1.
_HELD_HERE = """EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
      AND classid::bigint = (%(key)s::bigint >> 32)
      AND objid::bigint = (%(key)s::bigint & 4294967295)
)"""
_LOCK_HELD = f"SELECT {_HELD_HERE} AS held"
# Session advisory locks are re-entrant: a server session that already holds the lock grants
# it again. A new connection holds nothing, so a lock already here was taken by another
# client the pooler gave this server session: say so (NULL) rather than migrate beside it.
_TRY_LOCK = f"SELECT CASE WHEN {_HELD_HERE} THEN NULL ELSE pg_try_advisory_lock(%(key)s) END AS ok"
_UNDECLARED_POOLER = (
    "the connection migrate uses shares its server session with other clients (the migration "
    "lock is not its own): database.migrate_url (or database.url, without it) seems to go "
    "through a transaction pooler (PgBouncer with "
    "pool_mode = transaction, or a managed database's pooler). Set database.pooler: "
    "transaction and database.migrate_url to a direct connection to PostgreSQL, then run "
    "`ordermon migrate` again (the pooler may keep that lock until it closes the server "
    "connection: restart it if the next migrate waits for the lock)"
)


def _check_session_kept(conn: db.Connection) -> None:
    """A cheap probe for a transaction pooler nobody told ordermon about: the lock taken by
    the statement before is not this server session's when the pooler gave the next
    statement another server connection. (Given the same one, the probe cannot tell; that
    is why database.pooler and database.migrate_url exist.)"""
    row = conn.execute(_LOCK_HELD, {"key": ADVISORY_LOCK_KEY}).fetchone()
    if row is None or not row["held"]:
        raise errors.MigrationError(_UNDECLARED_POOLER)


def _record(conn: db.Connection, migration: Migration) -> None:
    conn.execute(
        "INSERT INTO ordermon_migrations (version, name) VALUES (%(version)s, %(name)s)",
        {"version": migration.version, "name": migration.name},
    )


# What a migration meets when the schema is not the one the migrations before it made (an
# object made by hand, or by a development build of ordermon): told, not a traceback.
_UNEXPECTED_SCHEMA = (
    psycopg.errors.DuplicateTable,
    psycopg.errors.DuplicateObject,
    psycopg.errors.DuplicateColumn,
    psycopg.errors.DuplicateFunction,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedObject,
)


def _apply_file(conn: db.Connection, migration: Migration) -> None:
    """One file in one transaction, recorded with it: all of it or nothing."""
    try:
        with conn.transaction():
            conn.execute(migration.text.encode())
            _record(conn, migration)
    except _UNEXPECTED_SCHEMA as exc:
        said = str(exc).strip().splitlines()[0]
        raise errors.MigrationError(
            f"{migration.name} could not be applied: {said}. Nothing of it was applied (it "
            "runs in one transaction) and the migrations before it stay. The schema holds "
            "something this migration does not expect (changed by hand, or by a development "
            "build of ordermon): compare it with `ordermon migrate --print-sql`, put it right, "
            "and run `ordermon migrate` again"
        ) from None


def _apply_shop_file(conn: db.Connection, migration: Migration) -> None:
    missing = [s for s in migration.statements() if not _object_exists(conn, s)]
    for index, statement in enumerate(missing):
        try:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(LOCK_TIMEOUT))
            _drop_invalid_index(conn, statement)
            conn.execute(statement.encode())
        except psycopg.errors.InsufficientPrivilege:
            raise errors.MigrationError(_owner_must_run(conn, missing[index:])) from None
        except psycopg.errors.LockNotAvailable:
            raise errors.MigrationError(
                f"product_orders stayed locked for {LOCK_TIMEOUT} (the shop is busy with it); "
                "nothing was half-done: run `ordermon migrate` again in a quieter minute"
            ) from None
        finally:
            conn.execute("RESET lock_timeout")
    _record(conn, migration)


def _object_exists(conn: db.Connection, statement: str) -> bool:
    """Whether the catalog already shows what ``statement`` creates (valid, for an index)."""
    column = _ADD_COLUMN.search(statement)
    if column:
        row = conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%(table)s) "
            "AND attname = %(column)s AND NOT attisdropped",
            {"table": column.group(1), "column": column.group(2)},
        ).fetchone()
        return row is not None
    index = _CREATE_INDEX.search(statement)
    if index:
        row = conn.execute(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%(index)s)",
            {"index": index.group(1)},
        ).fetchone()
        return row is not None and bool(row["indisvalid"])
    raise errors.MigrationError(f"cannot tell from the catalog whether this ran: {statement}")


def _drop_invalid_index(conn: db.Connection, statement: str) -> None:
    """An interrupted CONCURRENTLY build leaves an invalid index behind: build it anew."""
    index = _CREATE_INDEX.search(statement)
    if index:
        conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(index.group(1)))
        )


def _owner_must_run(conn: db.Connection, statements: list[str]) -> str:
    role = conn.execute("SELECT current_user AS role").fetchone()
    name = role["role"] if role else "ordermon's role"
    listing = "\n".join("    " + s.replace("\n", "\n    ") for s in statements)
    return (
        f"the role {name} may not change product_orders (it is not the table's owner).\n"
        "Ask the owner of product_orders (or a superuser) to run:\n\n"
        f"{listing}\n\n"
        "then run `ordermon migrate` again: it sees them and finishes the rest."
    )
