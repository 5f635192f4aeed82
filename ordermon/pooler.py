"""Connection poolers (PgBouncer, a managed PostgreSQL's pooler) between ordermon and the
shop's database, and what each pooling mode allows.

In transaction pooling mode one client's consecutive transactions may run on different server
connections, and a server connection serves many clients in turn. Whatever lives in a server
session then belongs to whoever ran it: a prepared statement (psycopg prepares a query run
five times on one connection: the next client to get that server connection fails with
DuplicatePreparedStatement), a ``SET`` or ``set_config(..., false)``, a session advisory lock,
a LISTEN. ordermon keeps none of these on a pooled connection: it prepares nothing, the event
trigger reads ordermon_settings (sql/010_pooler_safe_events.sql), its advisory lock is a
transaction's, and the one session-level command, ``migrate``, takes a direct connection
(``database.migrate_url``) or is refused.

The mode is said in the config (``database.pooler``) or by a hint in the URL itself
(``?ordermon_pooler=transaction``, for a managed database whose connection string is handed
around whole); the hint is removed before the URL reaches libpq, which rejects unknown
parameters.
"""

import re
import urllib.parse

NONE, SESSION, TRANSACTION = "none", "session", "transaction"
MODES = (NONE, SESSION, TRANSACTION)
HINT = "ordermon_pooler"
# The hint in a URI's query (?a=b&ordermon_pooler=transaction) or as a key=value setting.
# As libpq reads them: a URI's query percent-decoded ("_" may come as %5F), a setting's value
# quoted or not.
_QUERY_HINT = re.compile(
    r"(?P<sep>[?&])" + HINT.replace("_", "(?:_|%5[Ff])") + r"=(?P<mode>[^&#]*)"
)
_SETTING_HINT = re.compile(
    r"(?:^|(?<=\s))" + HINT + r"\s*=\s*(?:'(?P<quoted>[^'\\]*)'|(?P<mode>\S*))\s*"
)
_URI = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)


class HintError(ValueError):
    """The URL's hint names no pooling mode, or names two."""


def split_hint(url: str) -> tuple[str, str | None]:
    """``url`` without ordermon's pooler hint, and the mode the hint names (None without
    one). Everything else of the URL (sslmode, certificates, options) is left as written."""
    pattern = _QUERY_HINT if _URI.match(url.strip()) else _SETTING_HINT
    modes = [_mode(m) for m in pattern.finditer(url)]
    if not modes:
        return url, None
    if len(set(modes)) > 1:
        raise HintError(f"the URL names {HINT} more than once, differently")
    if modes[0] not in MODES:
        # Its value is not quoted: a raw "&" in a password makes the rest of it read as one.
        case = " (write it in lowercase)" if modes[0].lower() in MODES else ""
        raise HintError(
            f"{HINT} in the URL names no pooling mode{case}: expected one of {', '.join(MODES)}"
        )
    if pattern is _QUERY_HINT:
        clean = _QUERY_HINT.sub(lambda m: m.group("sep"), url)
        # Tidy the separators the removal left: "?&a=b" -> "?a=b", "?a=b&" -> "?a=b", "?" -> "".
        clean = re.sub(r"\?&+", "?", re.sub(r"&{2,}", "&", clean))
        clean = re.sub(r"[?&]+(?=#|$)", "", clean)
    else:
        clean = _SETTING_HINT.sub("", url).strip()
    return clean, modes[0]


def _mode(match: "re.Match[str]") -> str:
    if match.re is _QUERY_HINT:
        return urllib.parse.unquote(match.group("mode"))
    quoted = match.group("quoted")
    return quoted if quoted is not None else match.group("mode")


def mode_of(url: str, configured: str = NONE) -> str:
    """The pooling mode of a connection to ``url``: the URL's hint, else the configured one."""
    _, hinted = split_hint(url)
    return hinted or configured


def prepares(mode: str) -> bool:
    """Whether server-side prepared statements survive from one transaction to the next."""
    return mode != TRANSACTION


# psycopg's own prepared statements meeting another client's on a pooled server connection
# (ordermon itself never PREPAREs): the pooler is a transaction pooler nobody declared.
UNDECLARED = (
    "database.url seems to go through a transaction pooler (PgBouncer with pool_mode = "
    "transaction, or a managed database's pooler) that ordermon was not told about: a "
    "statement it prepared met another client's on a shared server connection. Set "
    "database.pooler: transaction (or end the URL with ?ordermon_pooler=transaction) and "
    "database.migrate_url to a direct connection, then run the command again"
)


def migration_refusal(mode: str) -> str | None:
    """Why `migrate` may not run over a connection in ``mode``, or None when it may."""
    if mode != TRANSACTION:
        return None
    return (
        "migrate needs a direct connection to PostgreSQL, and database.url goes through a "
        "transaction pooler (it builds indexes CONCURRENTLY and holds a session advisory lock "
        "for the whole migration, which a transaction pooler cannot keep); set "
        "database.migrate_url to the database itself (for PgBouncer: its host and port "
        "instead of the pooler's), then run `ordermon migrate` again"
    )


# What PgBouncer says when it, not PostgreSQL, ends a client's wait, and what to do about it.
_POOLER_REFUSALS = (
    (
        "query_wait_timeout",
        "the connection pooler gave up waiting for a free server connection "
        "(PgBouncer's query_wait_timeout): its pool for this database and user is exhausted. "
        "Look for clients idle in transaction holding the pool's server connections (SHOW "
        "POOLS on PgBouncer's console, pg_stat_activity on PostgreSQL), or raise "
        "default_pool_size; then run the command again",
    ),
    (
        "max_client_conn",
        "the connection pooler accepts no more clients (PgBouncer's max_client_conn): raise "
        "it, or find who holds its client connections; then run the command again",
    ),
)


def refusal_advice(message: str) -> str | None:
    """What a connection pooler's own error (in ``message``) means and what to do, or None
    when the message is not one of them."""
    for marker, advice in _POOLER_REFUSALS:
        if marker in message:
            return advice
    return None
