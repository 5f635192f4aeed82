"""Connections to the shop's database, and the translation of database failures into errors
that say what to do. No message leaves here with a database password in it."""

import contextlib
import re
import types
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.errors
import psycopg.pq
import psycopg.rows

from ordermon import errors, pooler

Connection = psycopg.Connection[dict[str, Any]]
EMBEDDED = "embedded"
MASK = "***"

# The password parts of the forms a database URL takes: ``user:PASSWORD@`` (with or without
# a scheme; libpq ends it at the first "/" or "@"), ``?password=`` in a URI's query, and a
# ``password=`` setting (quoted with backslash escapes, or up to the next space).
# The user and its ":" ("shop:" of "postgresql://shop:pw@h"): after a scheme, or alone but then
# not followed by "//", which would be a scheme's own (postgresql://postgres@h has no password).
_HEAD = r"(?P<head>(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:|[^\s:/@'\"]*:(?!//)))"
_USERINFO = re.compile(_HEAD + r"[^\s/@]*@")
# An unencoded "@" or "/" in a password: libpq ends it at the first "@" and takes the rest for
# the host, which its errors then quote. Up to the last "@" of the word is the operator's
# password, and each piece of it (the "host" libpq failed to resolve) is a secret too.
_USERINFO_GREEDY = re.compile(_HEAD + r"[^\s'\"]*@")
_PIECE_MIN = 4  # shorter pieces ("x" of "Pw@SECRET/x") would mask ordinary words
# (A value already masked is left alone, so the punctuation after it stays.)
_MASKED = r"(?!\*\*\*(?:[\s:;,.)]|$))"
_QUERY = re.compile(r"(?P<head>[?&]password=)" + _MASKED + r"[^&#\s]*", re.IGNORECASE)
_SETTING = re.compile(
    r"(?P<head>(?<![?&\w])password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|" + _MASKED + r"\S+)",
    re.IGNORECASE,
)
# Every password of every URL this process connected with, in all its forms: the errors of
# psycopg and libpq quote parts of a URL, and they are redacted wherever they surface.
_known_secrets: set[str] = set()


def resolve_url(url: str) -> str:
    """Turn ``embedded`` into the URI of the private PostgreSQL, starting it if needed."""
    if url.strip() != EMBEDDED:
        return url
    from ordermon.dev import embedded  # only this mode pays for importing it

    return embedded.start(embedded.default_data_dir())


def password_forms(url: str) -> set[str]:
    """The password of ``url`` in each form a message may show it: as written, decoded,
    percent-encoded, unquoted; whatever form the URL has, parsable or not."""
    found: set[str] = set()
    with contextlib.suppress(psycopg.Error, ValueError):
        found.add(str(psycopg.conninfo.conninfo_to_dict(url).get("password") or ""))
    for match in _USERINFO.finditer(url):
        found.add(match.group(0)[len(match.group("head")) : -1])
    for match in _USERINFO_GREEDY.finditer(url):
        whole = match.group(0)[len(match.group("head")) : -1]
        found.add(whole)
        found.update(p for p in re.split(r"[@/:]", whole) if len(p) >= _PIECE_MIN)
    for match in _QUERY.finditer(url):
        found.add(match.group(0)[len(match.group("head")) :])
    for match in _SETTING.finditer(url):
        value = match.group(0)[len(match.group("head")) :]
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:].removesuffix("'"))
        found.add(value)
    forms: set[str] = set()
    for password in found - {""}:
        decoded = urllib.parse.unquote(password)
        forms |= {password, decoded, urllib.parse.unquote_plus(password)}
        forms |= {urllib.parse.quote(decoded, safe=""), urllib.parse.quote_plus(decoded)}
    return forms - {""}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without database passwords: every known or given password removed wherever
    it appears (libpq echoes parts of a bad URL), then the password part of anything shaped
    like a database URL or a ``password=`` setting masked."""
    for secret in sorted(_known_secrets.union(secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO_GREEDY.sub(rf"\g<head>{MASK}@", text)
    text = _QUERY.sub(rf"\g<head>{MASK}", text)
    return _SETTING.sub(rf"\g<head>{MASK}", text)


def redact_url(url: str) -> str:
    """The URL without its password, fit for an error message."""
    return redact(url, password_forms(url))


class _Connection(psycopg.Connection[dict[str, Any]]):
    """A connection that, when a refused privilege ends its block, asks the catalog what the
    role lacks before it closes: the server's refusal names the object, in its own language,
    but not its kind, and the advice depends on it (a schema's CREATE, or a table's grant)."""

    pooling: str = pooler.NONE  # the pooling mode it was opened through (see ordermon/pooler.py)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: types.TracebackType | None,
    ) -> None:
        if isinstance(exc_val, psycopg.errors.InsufficientPrivilege) and not self.closed:
            with contextlib.suppress(psycopg.Error):
                if self.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                    self.rollback()
                exc_val.add_note(privilege_advice(self))
        super().__exit__(exc_type, exc_val, exc_tb)


def connect(
    url: str,
    *,
    autocommit: bool = False,
    pooling: str = pooler.NONE,
    setting: str = "database.url (or ORDERMON_DATABASE_URL)",
) -> Connection:
    """Open a connection; a refusal becomes a DatabaseError naming the (redacted) target and
    the ``setting`` it came from. Through a transaction pooler (``pooling``, or the URL's
    hint) nothing is prepared."""
    secrets = password_forms(url)
    _known_secrets.update(secrets)
    try:
        url, hinted = pooler.split_hint(url)
    except pooler.HintError as exc:
        raise errors.ConfigError(f"database URL {redact_url(url)}: {exc}") from None
    mode = hinted or pooling
    try:
        conn = _Connection.connect(
            url,
            autocommit=autocommit,
            row_factory=psycopg.rows.dict_row,
            connect_timeout=10,
            application_name="ordermon",
        )
    except psycopg.Error as exc:
        reason = _first_line(str(exc)) or type(exc).__name__
        advice = pooler.refusal_advice(reason) or (
            f"Check that PostgreSQL is running and that {setting} is right"
        )
        raise errors.DatabaseError(
            redact(
                f"cannot connect to the database at {redact_url(url)}: {reason}. {advice}.",
                secrets,
            )
        ) from None
    conn.pooling = mode
    if not pooler.prepares(mode):
        # A statement prepared on a pooled server connection is left there for its next
        # client, which fails to prepare its own under the same name.
        conn.prepare_threshold = None
    return conn


def pooling_of(conn: Connection) -> str:
    """The pooling mode ``conn`` was opened with (as ``connect`` was told or the URL said)."""
    return str(getattr(conn, "pooling", pooler.NONE))


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Turn the database failures an operator can fix into OrdermonErrors (by SQLSTATE), none
    of them quoting a database password."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        notes = getattr(exc, "__notes__", None) or [_ALL_GRANTS]
        raise errors.DatabaseError(
            redact(f"the database refused ordermon's role: {_diag(exc)}. {notes[-1]}")
        ) from None
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise errors.DatabaseError(
            redact(
                f"the database lacks something ordermon needs: {_diag(exc)}. "
                "Run `ordermon migrate` (it is safe to run again)."
            )
        ) from None
    except (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName):
        raise errors.DatabaseError(
            f"{pooler.UNDECLARED}. Work already committed is kept; claimed orders return after "
            "their lease."
        ) from None
    except psycopg.errors.TransactionRollback as exc:
        raise errors.DatabaseError(
            redact(
                f"the database aborted a transaction ({_diag(exc)}); nothing of it was kept: "
                "run the command again"
            )
        ) from None
    except psycopg.OperationalError as exc:
        advice = pooler.refusal_advice(str(exc))
        if advice:
            raise errors.DatabaseError(
                redact(
                    f"{advice}. Work already committed is kept; claimed orders return after "
                    "their lease."
                )
            ) from None
        raise errors.DatabaseError(
            redact(
                f"lost the database connection: {_first_line(str(exc)) or type(exc).__name__}. "
                "Work already committed is kept; claimed orders return after their lease."
            )
        ) from None
    except errors.DatabaseError as exc:
        clean = redact(str(exc))
        if clean != str(exc):
            raise type(exc)(clean) from None
        raise


# What ordermon's role needs on the shop's tables (README: "Privileges").
SHOP_GRANTS = (
    ("product_orders", "SELECT"),
    ("product_orders", "UPDATE"),
    ("users", "SELECT"),
    ("users", "UPDATE"),
    ("wallet_transactions", "INSERT"),
)
_ALL_GRANTS = (
    "ordermon's role needs USAGE and CREATE on the schema of its tables, SELECT and UPDATE on "
    "product_orders and users, INSERT on wallet_transactions, and to own its ordermon_ "
    'tables (README: "Privileges")'
)
_LACKS = """
SELECT current_user AS role, s.name AS schema,
       has_schema_privilege(s.name, 'USAGE') AS schema_usage,
       has_schema_privilege(s.name, 'CREATE') AS schema_create,
       ARRAY(SELECT g.tab || ' ' || g.privilege
             FROM unnest(%(tables)s::text[], %(privileges)s::text[]) AS g(tab, privilege)
             WHERE NOT coalesce(has_table_privilege(to_regclass(g.tab), g.privilege), false))
           AS tables,
       ARRAY(SELECT c.relname::text FROM pg_class c
             WHERE c.relname LIKE 'ordermon\\_%%' AND c.relkind IN ('r', 'p')
               AND pg_table_is_visible(c.oid) AND NOT pg_has_role(c.relowner, 'USAGE')
             ORDER BY 1) AS not_owned
FROM (SELECT coalesce(current_schema(), 'public') AS name) s
"""


def privilege_advice(conn: Connection) -> str:
    """What the connected role lacks of README's grants, as the statements that grant it and
    who runs them; the grants in general when it lacks none of them."""
    lines = lacking_grants(conn)
    if not lines:
        return _ALL_GRANTS
    return "It lacks:\n" + "\n".join("    " + line for line in lines)


def lacking_grants(conn: Connection) -> list[str]:
    """The statements (with who must run them) that would give the connected role what it
    lacks of README's grants; empty when it has them all."""
    row = conn.execute(
        _LACKS,
        {"tables": [t for t, _ in SHOP_GRANTS], "privileges": [p for _, p in SHOP_GRANTS]},
    ).fetchone()
    if row is None:
        return []
    role, lines = _identifier(row["role"]), []
    if not (row["schema_usage"] and row["schema_create"]):
        lines.append(
            f"GRANT USAGE, CREATE ON SCHEMA {_identifier(row['schema'])} TO {role};  "
            "-- as the schema's owner: ordermon creates its ordermon_ tables there "
            "(PostgreSQL 15 and later let only the owner create in public)"
        )
    missing: dict[str, list[str]] = {}
    for entry in row["tables"]:
        table, privilege = entry.split(" ")
        missing.setdefault(table, []).append(privilege)
    for table, granted in missing.items():
        lines.append(
            f"GRANT {', '.join(granted)} ON {table} TO {role};  -- as the owner of {table}"
        )
    if row["not_owned"]:
        lines.append(
            f"-- {', '.join(row['not_owned'])} belong to another role: run ordermon as the "
            f"role that ran `ordermon migrate`, or have their owner run ALTER TABLE ... "
            f"OWNER TO {role} for each"
        )
    return lines


def _identifier(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


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
