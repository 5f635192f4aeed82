"""`ordermon migrate`: fresh, repeated, partial, concurrent, without privileges, wrong database."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ordermon import db, errors, migrate
from tests.conftest import run_cli, with_dbname, write_config

ALL_VERSIONS = [m.version for m in migrate.migrations()]
ALL_NAMES = ", ".join(m.name for m in migrate.migrations())


@pytest.fixture
def shop_url(empty_db_url: str) -> str:
    """A database holding only the shop's tables, as in production before ordermon."""
    with db.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(db.platform_schema().encode())
    return empty_db_url


def _catalog(url: str) -> dict[str, object]:
    with db.connect(url, autocommit=True) as conn:
        column = conn.execute(
            "SELECT data_type, character_maximum_length AS len FROM information_schema.columns "
            "WHERE table_name = 'product_orders' AND column_name = 'provider_referans'"
        ).fetchone()
        indexes = {
            r["indexname"]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename LIKE '%'")
        }
        tables = {
            r["tablename"]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'ordermon_%'"
            )
        }
        versions = []
        if "ordermon_migrations" in tables:
            versions = [
                r["version"]
                for r in conn.execute("SELECT version FROM ordermon_migrations ORDER BY 1")
            ]
    return {"column": column, "indexes": indexes, "tables": tables, "versions": versions}


def test_fresh_then_repeated(shop_url: str, tmp_path: Path) -> None:
    """A fresh run creates everything; a second one says it is up to date and changes nothing."""
    config_path = write_config(tmp_path / "c.yaml", shop_url, "http://127.0.0.1:9")
    first = run_cli("migrate", "--config", str(config_path))
    assert first.returncode == 0, first.stderr
    assert f"applied: {ALL_NAMES}" in first.stdout
    catalog = _catalog(shop_url)
    assert catalog["column"] == {"data_type": "character varying", "len": 255}
    assert {"idx_orders_provider_referans", "idx_ordermon_orders_monitored"} <= set(
        catalog["indexes"]  # type: ignore[call-overload]
    )
    assert {"ordermon_enrolments", "ordermon_attempts", "ordermon_refunds", "ordermon_runs"} <= set(
        catalog["tables"]  # type: ignore[call-overload]
    )
    assert catalog["versions"] == ALL_VERSIONS
    second = run_cli("migrate", "--config", str(config_path))
    assert second.returncode == 0
    assert "up to date" in second.stdout
    assert _catalog(shop_url) == catalog


def test_shop_already_has_the_column_and_index(shop_url: str) -> None:
    """Objects the shop's backend created itself are recognised, not created twice."""
    with db.connect(shop_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE product_orders ADD COLUMN provider_referans varchar(255)")
        conn.execute(
            "CREATE INDEX idx_orders_provider_referans ON product_orders (provider_referans)"
        )
        result = migrate.run(conn)
    assert ", ".join(result.applied) == ALL_NAMES
    assert _catalog(shop_url)["versions"] == ALL_VERSIONS


def test_partially_applied_and_invalid_index(shop_url: str) -> None:
    """A run that stopped half-way (an invalid index left behind) is finished by the next."""
    with db.connect(shop_url, autocommit=True) as conn:
        migrate.run(conn)
        conn.execute("DELETE FROM ordermon_migrations WHERE version = 2")
        conn.execute("DROP TABLE ordermon_provider_state")
        conn.execute("DELETE FROM ordermon_migrations WHERE version = 3")
        conn.execute("DROP INDEX idx_ordermon_orders_monitored")
        # What an interrupted CREATE INDEX CONCURRENTLY leaves: an index marked invalid.
        conn.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'idx_orders_provider_referans'::regclass"
        )
        result = migrate.run(conn)
        assert result.applied == ("002_product_orders", "003_provider_state")
        valid = conn.execute(
            "SELECT bool_and(indisvalid) AS ok FROM pg_index WHERE indexrelid IN "
            "('idx_orders_provider_referans'::regclass, 'idx_ordermon_orders_monitored'::regclass)"
        ).fetchone()
        assert valid == {"ok": True}


def test_database_without_product_orders(empty_db_url: str, tmp_path: Path) -> None:
    """A database that is not the shop's gets a clear error and exit 1, no traceback."""
    config_path = write_config(tmp_path / "c.yaml", empty_db_url, "http://127.0.0.1:9")
    result = run_cli("migrate", "--config", str(config_path))
    assert result.returncode == 1
    assert "no product_orders table" in result.stderr
    assert "Traceback" not in result.stderr
    assert _catalog(empty_db_url)["tables"] == set()


def test_print_sql_runs_nothing() -> None:
    """--print-sql prints every statement, needs no database and no config."""
    result = run_cli("migrate", "--print-sql")
    assert result.returncode == 0
    assert "ALTER TABLE product_orders ADD COLUMN IF NOT EXISTS provider_referans" in result.stdout
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_provider_referans" in result.stdout
    assert "CREATE TABLE ordermon_enrolments" in result.stdout


def test_two_migrations_at_once(shop_url: str, tmp_path: Path) -> None:
    """Two migrate processes started together serialise on the advisory lock; both succeed."""
    config_path = write_config(tmp_path / "c.yaml", shop_url, "http://127.0.0.1:9")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ordermon", "migrate", "--config", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted("up to date" in out for out, _ in outputs) == [False, True]
    assert _catalog(shop_url)["versions"] == ALL_VERSIONS


@pytest.fixture
def limited_role(server_dsn: str, shop_url: str) -> Iterator[str]:
    """A login role that may create tables but does not own product_orders."""
    role = f"ordermon_limited_{os.getpid()}"
    dbname = psycopg.conninfo.conninfo_to_dict(shop_url)["dbname"]
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT CREATE, CONNECT ON DATABASE "{dbname}" TO "{role}"')
    with psycopg.connect(shop_url, autocommit=True) as owner:
        owner.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        owner.execute(f'GRANT SELECT, UPDATE ON product_orders, users TO "{role}"')
        owner.execute(f'GRANT INSERT ON wallet_transactions TO "{role}"')
    yield role
    with psycopg.connect(shop_url, autocommit=True) as owner:
        owner.execute(f'DROP OWNED BY "{role}" CASCADE')
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_without_privilege_prints_the_owner_statements(
    shop_url: str, limited_role: str, tmp_path: Path
) -> None:
    """A role that does not own product_orders gets exit 1 and the exact statements; once the
    owner ran them, migrate finishes."""
    limited_url = psycopg.conninfo.make_conninfo(shop_url, user=limited_role)
    config_path = write_config(tmp_path / "c.yaml", limited_url, "http://127.0.0.1:9")
    refused = run_cli("migrate", "--config", str(config_path))
    assert refused.returncode == 1
    assert "not the table's owner" in refused.stderr
    assert "Traceback" not in refused.stderr
    statements = [line.strip() for line in refused.stderr.splitlines() if line.startswith("    ")]
    script = "\n".join(statements)
    assert "ALTER TABLE product_orders ADD COLUMN IF NOT EXISTS provider_referans" in script
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_ordermon_orders_monitored" in script
    assert _catalog(shop_url)["versions"] == [1]  # ordermon's own tables are in place
    with psycopg.connect(shop_url, autocommit=True) as owner:
        for statement in script.replace("\n", " ").split(";"):
            if statement.strip():
                owner.execute(statement.encode())
    finished = run_cli("migrate", "--config", str(config_path))
    assert finished.returncode == 0, finished.stderr
    assert "applied: 002_product_orders, 003_provider_state" in finished.stdout
    assert _catalog(shop_url)["versions"] == ALL_VERSIONS


def test_sweep_before_migrate_says_so(shop_url: str, tmp_path: Path) -> None:
    """A sweep on an unmigrated database exits 1 and says to run migrate."""
    config_path = write_config(tmp_path / "c.yaml", shop_url, "http://127.0.0.1:9")
    result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 1
    assert "run `ordermon migrate`" in result.stderr


def test_misnamed_migration_file(tmp_path: Path) -> None:
    """A file not named NNN_name.sql is refused loudly."""
    (tmp_path / "1-bad.sql").write_text("SELECT 1;")
    with pytest.raises(errors.MigrationError, match=r"NNN_name\.sql"):
        migrate.migrations(tmp_path)


def test_server_url_helper(server_dsn: str) -> None:
    """The fixture helper keeps the server and changes only the database."""
    assert "dbname=x" in with_dbname(server_dsn, "x").replace("'", "")


def test_a_schema_changed_by_hand_is_a_clear_refusal(shop_url: str, tmp_path: Path) -> None:
    """A migration that meets something it did not expect (a table of its name made by hand,
    or by a development build) exits 1 naming the migration and the object, with no
    traceback; the migrations before it stay applied, nothing of it is, and a run after the
    fix finishes."""
    with db.connect(shop_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ordermon_schedule_models (provider_id text)")
    config_path = write_config(tmp_path / "c.yaml", shop_url, "http://127.0.0.1:9")
    refused = run_cli("migrate", "--config", str(config_path))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert "011_learned_schedule" in refused.stderr, refused.stderr
    assert "ordermon_schedule_models" in refused.stderr, refused.stderr
    assert _catalog(shop_url)["versions"] == ALL_VERSIONS[:-1]
    with db.connect(shop_url, autocommit=True) as conn:
        conn.execute("DROP TABLE ordermon_schedule_models")
    again = run_cli("migrate", "--config", str(config_path))
    assert again.returncode == 0 and "011_learned_schedule" in again.stdout, again.stderr
