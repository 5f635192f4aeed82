"""Fixtures: a real PostgreSQL (ORDERMON_TEST_DSN, else an embedded one), a template database
with the shop's tables and ordermon's schema cloned for every test, and the simulator."""

import datetime as dt
import decimal
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
import yaml
from hypothesis import settings

from ordermon import config, db, migrate
from ordermon.dev import simulator
from tests import pooler

PROVIDER_ID = "3b6d4c1e-0000-4000-8000-000000000001"
KOD, SIFRE = "4711", "s3cr3t-sifre-value"
_counter = itertools.count()

# No per-example deadline (a loaded CI machine is slow, not wrong); in CI the examples are
# derandomised so that a run is reproducible, while local runs keep exploring.
settings.register_profile("ordermon", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile("ordermon")

# Set, every test's database (`db_url`, and ordermon's config made from it) is reached through
# a PgBouncer in transaction pooling mode that the session starts (.ci/run reruns the
# concurrency, crash, rate-limit and events tests so); `direct_db_url` stays direct.
THROUGH_POOLER = bool(os.environ.get("ORDERMON_TEST_THROUGH_POOLER"))


def with_dbname(dsn: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """The PostgreSQL the tests use: the CI service, or a private embedded one."""
    dsn = os.environ.get("ORDERMON_TEST_DSN")
    if dsn:
        yield dsn
        return
    from ordermon.dev import embedded

    with embedded.temporary(prefix="ordermon-test-pg-") as url:
        yield url


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """A database with the shop's tables and ordermon's schema, cloned per test."""
    name = f"ordermon_tpl_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    with db.connect(with_dbname(server_dsn, name), autocommit=True) as conn:
        conn.execute(db.platform_schema().encode())
        migrate.run(conn)
    yield name
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_database(server_dsn: str, template: str | None) -> Iterator[str]:
    name = f"ordermon_t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        clause = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{clause}')
    yield with_dbname(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pgbouncer(server_dsn: str) -> Iterator[int]:
    """The port of a PgBouncer in transaction pooling mode before the test PostgreSQL."""
    with pooler.for_tests(server_dsn) as port:
        yield port


@pytest.fixture
def direct_db_url(server_dsn: str, template_db: str) -> Iterator[str]:
    """A private database for one test, migrated and holding the shop's (empty) tables."""
    yield from _fresh_database(server_dsn, template_db)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, direct_db_url: str) -> str:
    """``direct_db_url``, or (ORDERMON_TEST_THROUGH_POOLER) that database through PgBouncer,
    the URL carrying ordermon's pooler hint."""
    if not THROUGH_POOLER:
        return direct_db_url
    return pooler.pooled(direct_db_url, request.getfixturevalue("pgbouncer"))


@pytest.fixture
def empty_db_url(server_dsn: str) -> Iterator[str]:
    """A private, empty database for one test."""
    yield from _fresh_database(server_dsn, None)


@pytest.fixture
def conn(db_url: str) -> Iterator[db.Connection]:
    with db.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def sim() -> Iterator[simulator.Simulator]:
    with simulator.Simulator(kod=KOD, sifre=SIFRE) as server:
        yield server


def config_document(
    db_url: str, sim_url: str, provider: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A valid config with a fast schedule; ``provider`` changes keys of the one provider,
    ``overrides`` replace top-level keys."""
    document: dict[str, Any] = {
        "database": {"url": db_url},
        "timezone": "UTC",
        "schedule": {
            "first_check_after": "0s",
            "base_delay": "1s",
            "factor": 2,
            "max_delay": "10s",
            "jitter": 0,
            "give_up_after": "1h",
        },
        "sweep": {"batch_size": 50, "concurrency": 8, "lease": "60s"},
        "on_failed": "refund",
        "providers": [
            {
                "id": PROVIDER_ID,
                "name": "alaya",
                "kind": "znet",
                "base_url": sim_url,
                "kod": KOD,
                "sifre": SIFRE,
                "timeout": "5s",
            }
        ],
    }
    document["providers"][0].update(provider or {})
    document.update(overrides)
    return document


def make_config(db_url: str, sim_url: str, **overrides: Any) -> config.Config:
    return config.parse(config_document(db_url, sim_url, **overrides), {})


def providers_config(db_url: str, *docs: dict[str, Any], **top: Any) -> config.Config:
    """The test config with exactly these providers (``provider_doc``) and top-level keys."""
    return config.parse(config_document(db_url, "http://unused", providers=list(docs), **top), {})


def write_config(path: Path, db_url: str, sim_url: str, **overrides: Any) -> Path:
    path.write_text(yaml.safe_dump(config_document(db_url, sim_url, **overrides)))
    return path


def add_user(conn: db.Connection, balance: str = "100.00") -> uuid.UUID:
    user_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO users (id, email, balance) VALUES (%(id)s, %(email)s, %(balance)s)",
        {"id": user_id, "email": f"{user_id}@example.com", "balance": decimal.Decimal(balance)},
    )
    return user_id


def add_order(
    conn: db.Connection,
    user_id: uuid.UUID | None,
    reference: str | None,
    *,
    amount: str = "12.50",
    sent_at: dt.datetime | None = None,
    provider_id: str = PROVIDER_ID,
    external_status: str = "sent",
    status: str = "pending",
    **columns: Any,
) -> uuid.UUID:
    order_id = uuid.uuid4()
    values = {
        "id": order_id,
        '"userId"': user_id,
        '"sellPriceAmount"': decimal.Decimal(amount),
        '"providerId"': provider_id,
        '"externalStatus"': external_status,
        "status": status,
        '"sentAt"': sent_at or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        "provider_referans": reference,
        **{f'"{k}"': v for k, v in columns.items()},
    }
    names = ", ".join(values)
    placeholders = ", ".join(f"%(p{i})s" for i in range(len(values)))
    conn.execute(
        f"INSERT INTO product_orders ({names}) VALUES ({placeholders})".encode(),
        {f"p{i}": v for i, v in enumerate(values.values())},
    )
    return order_id


def order_row(conn: db.Connection, order_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM product_orders WHERE id = %(id)s", {"id": order_id})
    found = row.fetchone()
    assert found is not None
    return found


def enrolment_of(conn: db.Connection, order_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(
        "SELECT * FROM ordermon_enrolments WHERE order_id = %(id)s ORDER BY id DESC LIMIT 1",
        {"id": order_id},
    ).fetchone()
    assert row is not None
    return row


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``ordermon ARGS`` as a real process, without a terminal."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ordermon", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class FakeClock:
    """A clock the test moves by hand (core logic never reads the real one)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


TOKEN = "tok-3f9a1c-secret"


def provider_doc(kind: str, sim_url: str, **extra: Any) -> dict[str, Any]:
    """A provider of ``kind`` pointing at the simulator, named after its kind."""
    doc: dict[str, Any] = {"id": f"{kind}-id", "name": kind, "kind": kind, "timeout": "5s"}
    if kind == "znet":
        doc.update(base_url=sim_url, kod=KOD, sifre=SIFRE)
    elif kind in ("barakat", "apstore"):
        doc.update(base_url=sim_url, token=TOKEN)
    elif kind == "internal":
        doc.update(base_url=sim_url, token=TOKEN, tenant_host="sister.example")
    elif kind == "json":
        doc.update(
            url=sim_url + "/json/orders/{reference}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            status_path="result.state",
            pin_path="result.code",
            message_path="result.info",
            statuses={"DELIVERED": "completed", "CANCELLED": "failed", "IN_PROGRESS": "processing"},
        )
    doc.update(extra)
    return doc
