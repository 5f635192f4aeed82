"""ordermon behind a real PgBouncer in transaction mode, attacked: migrations sharing one
server session, a pool that is exhausted, settings edited by hand, hints that hold a password.
Each test is a failure seen first through a real pgbouncer (tests/pooler.py)."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ordermon import config, db, errors, migrate, pooler
from ordermon.dev import simulator
from ordermon.events import outbox
from tests import pooler as bouncer
from tests.conftest import add_order, add_user, config_document, run_cli
from tests.test_privileges import (
    _grant,
    _readme_blocks,
    shop,  # noqa: F401 (a fixture)
)


def _write(path: Path, database: dict[str, Any]) -> Path:
    document = config_document("unused", "http://unused")
    document["database"] = database
    path.write_text(yaml.safe_dump(document))
    return path


def _ordermon(*args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "ordermon", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


# --- migrate through a pooler nobody declared ---


def test_a_second_migrate_on_the_same_server_session_is_refused(
    server_dsn: str, empty_db_url: str
) -> None:
    """One server connection for every client: a second migrate's try-lock is granted by the
    session that already holds the lock (advisory locks are re-entrant), and its probe sees the
    lock held by its own backend. It must not migrate alongside the first."""
    with db.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(db.platform_schema().encode())
    with bouncer.for_tests(server_dsn, pool_size=1) as port:
        url = bouncer.pooled(empty_db_url, port, hint=False)
        with db.connect(url, autocommit=True) as first, db.connect(url, autocommit=True) as second:
            migrate._lock(first)
            with pytest.raises(errors.MigrationError, match="transaction pooler"):
                migrate.run(second)
            first.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": migrate.ADVISORY_LOCK_KEY})
    with db.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('ordermon_migrations') AS t").fetchone() == {
            "t": None
        }


def test_concurrent_migrates_over_a_pooled_migrate_url_never_crash(
    server_dsn: str, empty_db_url: str, tmp_path: Path
) -> None:
    """migrate_url pointed at PgBouncer by mistake, three migrates at once: each one either
    migrates or is refused with the pooler advice; no traceback, and the schema is whole."""
    with db.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(db.platform_schema().encode())
    with bouncer.for_tests(server_dsn, pool_size=1) as port:
        pooled = bouncer.pooled(empty_db_url, port, hint=False)
        path = _write(tmp_path / "c.yaml", {"url": pooled, "migrate_url": pooled})
        processes = [_ordermon("migrate", "--config", str(path)) for _ in range(4)]
        finished = [(p.wait(120), *p.communicate()) for p in processes]
    for code, out, err in finished:
        assert "Traceback" not in err and "Error:" not in err, err
        assert code == 0 or (code == 1 and "transaction pooler" in err), (code, out, err)
    again = _ordermon(
        "migrate", "--config", str(_write(tmp_path / "d.yaml", {"url": empty_db_url}))
    )
    assert again.wait(120) == 0, again.communicate()
    with db.connect(empty_db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) AS n FROM ordermon_migrations").fetchone()
    assert row == {"n": len(migrate.migrations())}


# --- the hint and passwords ---

SECRET = "Zq9SecretPw"


@pytest.mark.parametrize(
    "url",
    [
        # A raw "&" in the password: what follows it reads as the hint, up to the host.
        f"postgresql://shop:x&ordermon_pooler=y{SECRET}@db.internal/shop",
        f"host=db.internal password={SECRET} ordermon_pooler={SECRET}",
    ],
)
def test_a_bad_hint_never_shows_a_password(url: str, tmp_path: Path) -> None:
    for database in ({"url": url}, {"url": "postgresql://shop@db/shop", "migrate_url": url}):
        refused = _ordermon("status", "--config", str(_write(tmp_path / "c.yaml", database)))
        out, err = refused.communicate(timeout=60)
        assert refused.returncode == 2, err
        assert "ordermon_pooler" in err and "expected one of none, session, transaction" in err
        assert "Zq9S" not in out + err and "cretPw" not in out + err, err


# --- an exhausted pool ---


def test_an_exhausted_pool_is_named_with_what_to_do(
    server_dsn: str, direct_db_url: str, tmp_path: Path
) -> None:
    """The pooler's only server connection is held by a client idle in a transaction: its
    query_wait_timeout ends ordermon's wait. The message says so, and what to do."""
    settings = {"query_wait_timeout": "2"}
    with bouncer.for_tests(server_dsn, pool_size=1, settings=settings) as port:
        hold = psycopg.connect(bouncer.pooled(direct_db_url, port, hint=False))
        hold.execute("SELECT 1")  # BEGIN ... and then nothing: the pool's one connection
        try:
            path = _write(tmp_path / "c.yaml", {"url": bouncer.pooled(direct_db_url, port)})
            for command in ("status", "sweep"):
                run = _ordermon(command, "--config", str(path))
                out, err = run.communicate(timeout=60)
                assert run.returncode == 1, (out, err)
                assert "Traceback" not in err
                assert "query_wait_timeout" in err and "pool" in err, err
                assert "idle in transaction" in err and "default_pool_size" in err, err
        finally:
            hold.close()


def test_a_pooler_full_of_clients_is_named_with_what_to_do(
    server_dsn: str, direct_db_url: str, tmp_path: Path
) -> None:
    with bouncer.for_tests(server_dsn, settings={"max_client_conn": "1"}) as port:
        path = _write(tmp_path / "c.yaml", {"url": bouncer.pooled(direct_db_url, port)})
        with psycopg.connect(bouncer.pooled(direct_db_url, port, hint=False)):
            run = _ordermon("status", "--config", str(path))
            out, err = run.communicate(timeout=60)
    assert run.returncode == 1 and "Traceback" not in err, (out, err)
    assert "max_client_conn" in err and "accepts no more clients" in err, err


# --- ordermon_settings ---


def test_a_dry_run_check_leaves_the_event_settings_alone(
    db_url: str, sim: simulator.Simulator, tmp_path: Path
) -> None:
    """`check --dry-run` says what would happen; with another config (include_pin: true,
    another channel) it must not make every later event of the shop carry the PIN."""
    with db.connect(db_url, autocommit=True) as conn:
        order = add_order(conn, add_user(conn), "ref-1")
        sim.script("ref-1", "completed:PIN-1")
        production = config.parse(config_document(db_url, sim.url), {})
        outbox.configure(conn, production.notify)
        before = conn.execute("SELECT * FROM ordermon_settings").fetchall()
        other = config_document(db_url, sim.url, notify={"include_pin": True, "pg_channel": "x"})
        path = tmp_path / "other.yaml"
        path.write_text(yaml.safe_dump(other))
        run = _ordermon("check", "--dry-run", "--config", str(path), str(order))
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, (out, err)
        assert conn.execute("SELECT * FROM ordermon_settings").fetchall() == before


def test_two_configs_with_other_event_settings_on_one_database_are_told(
    db_url: str, sim: simulator.Simulator, tmp_path: Path
) -> None:
    """The trigger's settings are one row per database: two configs that disagree on
    notify.include_pin or pg_channel take turns, events following whichever ran last. That is
    never silent: a sweep that finds the row written otherwise within the last 15 minutes
    warns, naming the keys and not their values."""
    with db.connect(db_url, autocommit=True) as conn:
        other = config.parse(
            config_document(db_url, sim.url, notify={"include_pin": True, "pg_channel": "x"}), {}
        )
        outbox.configure(conn, other.notify)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_document(db_url, sim.url)))
    first = run_cli("sweep", "--config", str(path))
    assert first.returncode == 0, first.stderr
    assert "another ordermon config" in first.stderr, first.stderr
    assert "notify.include_pin" in first.stderr and "notify.pg_channel" in first.stderr
    again = run_cli("sweep", "--config", str(path))
    assert again.returncode == 0 and "another ordermon config" not in again.stderr, again.stderr


# --- least privilege with migrate_url ---


def test_migrate_over_another_roles_migrate_url_checks_the_sweeping_role(
    server_dsn: str,
    shop: dict[str, str],  # noqa: F811 (the fixture imported above)
    sim: simulator.Simulator,
    tmp_path: Path,
) -> None:
    """On a managed database the natural migrate_url is the admin's: migrate then creates
    ordermon's tables as the admin, and the role of database.url (with every README grant on
    the shop's tables) cannot write them. migrate must say so, not the first sweep."""
    [public, *_] = _readme_blocks()
    _grant(shop, public, shop["role"])
    with bouncer.for_tests(server_dsn, users=(shop["role"],)) as port:
        document = config_document(bouncer.pooled(shop["role_url"], port), sim.url)
        document["database"]["migrate_url"] = shop["superuser"]
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(document))
        migrated = run_cli("migrate", "--config", str(path))
        swept = run_cli("sweep", "--config", str(path))
    assert "Traceback" not in migrated.stderr + swept.stderr
    assert swept.returncode != 0, "the sweeping role cannot write ordermon's tables"
    assert migrated.returncode == 1, (migrated.stdout, migrated.stderr)
    assert shop["role"] in migrated.stderr and "ordermon_" in migrated.stderr, migrated.stderr


# --- a transaction pooler nobody declared ---


def test_a_sweep_through_an_undeclared_pooler_says_to_declare_it(
    server_dsn: str, direct_db_url: str, sim: simulator.Simulator, tmp_path: Path
) -> None:
    """The unlucky operator who put PgBouncer in front and told ordermon nothing: another
    client left a prepared statement on the one server connection, and the sweep's fifth run
    of a query prepares one under the same name. Exit 1 and what to set, not a traceback."""
    with db.connect(direct_db_url, autocommit=True) as conn:
        user = add_user(conn)
        for i in range(20):
            sim.script(f"ref{i}", "completed:PIN")
            add_order(conn, user, f"ref{i}")
    with bouncer.for_tests(server_dsn, pool_size=1) as port:
        url = bouncer.pooled(direct_db_url, port, hint=False)
        with psycopg.connect(url, autocommit=True) as other:
            for i in range(8):  # psycopg prepares it the fifth time: "_pg3_0" on the server
                other.execute("SELECT %(i)s::int", {"i": i})
            document = config_document(url, sim.url, sweep={"batch_size": 1, "concurrency": 1})
            path = tmp_path / "c.yaml"
            path.write_text(yaml.safe_dump(document))
            swept = run_cli("sweep", "--config", str(path))
    assert "Traceback" not in swept.stderr, swept.stderr
    assert swept.returncode == 1, (swept.stdout, swept.stderr)
    assert "transaction pooler" in swept.stderr and "database.pooler: transaction" in swept.stderr


def test_a_migrate_url_that_fails_is_named_and_its_password_hidden(tmp_path: Path) -> None:
    """migrate_url down, or with a wrong password: the message names migrate_url (database.url
    is fine), and no form of the password appears."""
    for port in (1, 5432):
        user = "postgres" if port == 1 else "nosuchrole_i14"
        url = f"postgresql://{user}:{SECRET}%40x@127.0.0.1:{port}/postgres"
        path = _write(
            tmp_path / "c.yaml",
            {"url": "postgresql://postgres@127.0.0.1:5432/postgres", "migrate_url": url},
        )
        run = _ordermon("migrate", "--config", str(path))
        out, err = run.communicate(timeout=60)
        assert run.returncode == 1 and "Traceback" not in err, err
        assert "database.migrate_url" in err and "database.url" not in err, err
        assert "Zq9S" not in out + err and "cretPw" not in out + err, err


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        # libpq decodes a URI's query and takes a quoted keyword value: so does the hint.
        ("postgresql://h/shop?ordermon%5Fpooler=transaction", "postgresql://h/shop"),
        (
            "postgresql://h/shop?sslmode=require&ordermon_pooler=%74ransaction",
            "postgresql://h/shop?sslmode=require",
        ),
        ("host=h ordermon_pooler='transaction' dbname=shop", "host=h dbname=shop"),
    ],
)
def test_the_hint_in_every_form_libpq_reads(url: str, clean: str) -> None:
    assert pooler.split_hint(url) == (clean, "transaction")
