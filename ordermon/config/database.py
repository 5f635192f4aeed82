"""The `database:` section: where the shop's PostgreSQL is, whether a connection pooler stands
in front of it (ordermon/pooler.py), and the direct connection `migrate` needs behind one."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from ordermon import pooler
from ordermon.config import validate

KEYS = {"url", "pooler", "migrate_url"}


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    url: str = dataclasses.field(repr=False)  # without ordermon's pooler hint
    pooler: str = pooler.NONE
    migrate_url: str | None = dataclasses.field(default=None, repr=False)


def collect(document: Any, env: Mapping[str, str], problems: validate.Problems) -> DatabaseConfig:
    """The `database:` section, every error noted in ``problems``. No message quotes a URL:
    each may hold a password."""
    check = problems.check
    doc = problems.section(document, "database", KEYS)
    read = validate.Reader(env)
    given = env.get("ORDERMON_DATABASE_URL") or check(
        lambda: read.string(doc.get("url"), "database.url"), ""
    )
    where = "ORDERMON_DATABASE_URL" if env.get("ORDERMON_DATABASE_URL") else "database.url"
    url, hinted = _split(given, where, problems)
    configured = check(
        lambda: validate.choice(doc.get("pooler", pooler.NONE), "database.pooler", pooler.MODES),
        pooler.NONE,
    )
    if hinted and "pooler" in doc and hinted != configured and problems.clean("database.pooler"):
        problems.add(
            f"database.pooler: says {configured}, but the hint in {where} says "
            f"{pooler.HINT}={hinted}; keep one of them"
        )
    migrate_url = check(
        lambda: read.optional_string(doc.get("migrate_url"), "database.migrate_url"), None
    )
    if migrate_url is not None:
        migrate_url, migrate_hint = _split(migrate_url, "database.migrate_url", problems)
        if migrate_hint == pooler.TRANSACTION:
            problems.add(
                "database.migrate_url: its hint says it goes through a transaction pooler; "
                "migrate_url is the direct connection to PostgreSQL that migrate needs"
            )
    return DatabaseConfig(url, hinted or configured, migrate_url)


def _split(url: str, key: str, problems: validate.Problems) -> tuple[str, str | None]:
    try:
        return pooler.split_hint(url)
    except pooler.HintError as exc:
        problems.add(f"{key}: {exc}")
        return url, None
