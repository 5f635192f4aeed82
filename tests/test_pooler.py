"""ordermon behind a real PgBouncer in transaction pooling mode (tests/pooler.py): nothing
prepared, no session state, migrate on its direct connection or refused, sslmode passed on."""

import json
import select
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.errors
import pytest
import yaml

from ordermon import config, db, errors, migrate, pooler
from ordermon.dev import demo, simulator
from ordermon.sweep import runner, sweep
from tests import pooler as bouncer
from tests.conftest import add_order, add_user, config_document, run_cli
from tests.test_privileges import (
    _grant,
    _migrate_with_the_owners_help,
    _readme_blocks,
    _refund_by_a_sweep,
    shop,  # noqa: F401 (a fixture)
)

# --- the hint in the URL (pure) ---


@pytest.mark.parametrize(
    ("url", "clean", "mode"),
    [
        (
            "postgresql://u@h:6432/shop?ordermon_pooler=transaction",
            "postgresql://u@h:6432/shop",
            "transaction",
        ),
        (
            "postgresql://u:p%40w@h/shop?sslmode=verify-full&ordermon_pooler=transaction"
            "&sslrootcert=/etc/ssl/ca.pem",
            "postgresql://u:p%40w@h/shop?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem",
            "transaction",
        ),
        (
            "postgres://h/shop?sslmode=require&ordermon_pooler=session",
            "postgres://h/shop?sslmode=require",
            "session",
        ),
        (
            "host=h port=6432 ordermon_pooler=transaction sslmode=require",
            "host=h port=6432 sslmode=require",
            "transaction",
        ),
        ("postgresql://h/shop?sslmode=require", "postgresql://h/shop?sslmode=require", None),
        ("host=h dbname=shop", "host=h dbname=shop", None),
        ("embedded", "embedded", None),
    ],
)
def test_the_hint_is_removed_and_everything_else_kept(
    url: str, clean: str, mode: str | None
) -> None:
    assert pooler.split_hint(url) == (clean, mode)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/shop?ordermon_pooler=sometimes",
        "postgresql://h/shop?ordermon_pooler=",
        "postgresql://h/shop?ordermon_pooler=transaction&ordermon_pooler=none",
        "host=h ordermon_pooler=TRANSACTION",
    ],
)
def test_a_bad_hint_is_refused(url: str) -> None:
    with pytest.raises(pooler.HintError):
        pooler.split_hint(url)


# --- the config ---


def _database(database: dict[str, Any], env: dict[str, str] | None = None) -> config.Config:
    document = config_document("unused", "http://unused")
    document["database"] = database
    return config.parse(document, env or {})


def _problems(database: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(errors.ConfigError) as caught:
        _database(database, env)
    return str(caught.value)


def test_config_pooler_from_the_key_or_the_hint() -> None:
    plain = _database({"url": "postgresql://ordermon@db/shop"})
    assert (plain.database_pooler, plain.database_migrate_url) == ("none", None)
    keyed = _database(
        {
            "url": "postgresql://ordermon@pgb:6432/shop",
            "pooler": "transaction",
            "migrate_url": "postgresql://ordermon@db:5432/shop?sslmode=require",
        }
    )
    assert keyed.database_pooler == "transaction"
    assert keyed.database_migrate_url == "postgresql://ordermon@db:5432/shop?sslmode=require"
    hinted = _database(
        {}, {"ORDERMON_DATABASE_URL": "postgresql://o@pgb/shop?ordermon_pooler=transaction"}
    )
    assert (hinted.database_url, hinted.database_pooler) == (
        "postgresql://o@pgb/shop",
        "transaction",
    )
    agreeing = _database(
        {"url": "postgresql://o@pgb/s?ordermon_pooler=transaction", "pooler": "transaction"}
    )
    assert agreeing.database_pooler == "transaction"


def test_config_pooler_mistakes_are_named_and_no_password_shown() -> None:
    secret = "Pw-9f2c71e"
    said = _problems(
        {
            "url": f"postgresql://o:{secret}@pgb/shop?ordermon_pooler=sometimes",
            "pooler": "transactions",
            "migrate_url": f"postgresql://o:{secret}@db/shop?ordermon_pooler=transaction",
        }
    )
    assert "database.url: ordermon_pooler in the URL names no pooling mode: expected one of" in said
    assert "database.pooler: expected one of none, session, transaction" in said
    assert "database.migrate_url: its hint says it goes through a transaction pooler" in said
    assert secret not in said
    clash = _problems(
        {"url": "postgresql://o@pgb/shop?ordermon_pooler=transaction", "pooler": "none"}
    )
    assert "database.pooler: says none, but the hint in database.url says" in clash
    assert "database.poolr: unknown key" in _problems(
        {"url": "postgresql://o@h/s", "poolr": "transaction"}
    )


# --- PgBouncer itself ---


def test_prepared_statements_collide_through_pgbouncer_unless_told(
    direct_db_url: str, pgbouncer: int
) -> None:
    """What failed first: psycopg prepares a query run five times on one connection, and the
    next client given that server connection cannot prepare its own."""
    url = bouncer.pooled(direct_db_url, pgbouncer, hint=False)
    with (
        psycopg.connect(url, autocommit=True) as a,
        psycopg.connect(url, autocommit=True) as b,
        pytest.raises(psycopg.errors.DuplicatePreparedStatement),
    ):
        for i in range(10):
            a.execute("SELECT %(i)s::int AS i", {"i": i}).fetchone()
            b.execute("SELECT %(i)s::int AS i", {"i": i}).fetchone()
    hinted = bouncer.pooled(direct_db_url, pgbouncer)
    told = (
        db.connect(hinted, autocommit=True),
        db.connect(url, autocommit=True, pooling="transaction"),
    )
    with told[0] as a, told[1] as b:
        for i in range(20):
            assert a.execute("SELECT %(i)s::int AS i", {"i": i}).fetchone() == {"i": i}
            assert b.execute("SELECT %(i)s::int AS i", {"i": i}).fetchone() == {"i": i}
        assert db.pooling_of(a) == db.pooling_of(b) == "transaction"


def test_a_sweep_notifies_its_channel_whatever_another_client_left_in_the_session(
    server_dsn: str, direct_db_url: str, sim: simulator.Simulator
) -> None:
    """One server connection for every client: another client sets a session channel (and
    include_pin) on it while the sweep waits for the provider. The sweep's events still go to
    its own channel, without the PIN, and the other channel hears nothing."""
    with db.connect(direct_db_url, autocommit=True) as conn:
        user = add_user(conn)
        for i in range(6):
            sim.script(f"ref{i}", f"completed:PIN-{i}")
            add_order(conn, user, f"ref{i}")
    sim.latency = 0.8
    with (
        bouncer.for_tests(server_dsn, pool_size=1) as port,
        psycopg.connect(direct_db_url, autocommit=True) as listener,
    ):
        listener.execute("LISTEN ordermon_events")
        listener.execute("LISTEN intruder")
        pooled = bouncer.pooled(direct_db_url, port)
        cfg = config.parse(config_document(pooled, sim.url), {})
        intruded = threading.Event()
        done = threading.Event()

        def intruder() -> None:
            with db.connect(pooled, autocommit=True) as other:
                while not sim.requests and not done.is_set():
                    time.sleep(0.01)
                other.execute(
                    "SELECT set_config('ordermon.notify_channel', 'intruder', false), "
                    "set_config('ordermon.include_pin', 'on', false)"
                )
                intruded.set()
                done.wait(30)

        thread = threading.Thread(target=intruder)
        thread.start()
        try:
            report = runner.once(cfg, sweep.Options())
        finally:
            done.set()
            thread.join()
        assert intruded.is_set() and report.counts["completed"] == 6
        heard: dict[str, set[str]] = {"ordermon_events": set(), "intruder": set()}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(heard["ordermon_events"]) < 6:
            select.select([listener.fileno()], [], [], 0.5)
            for note in listener.notifies(timeout=0.1):
                heard[note.channel].add(json.loads(note.payload)["id"])
    with db.connect(direct_db_url, autocommit=True) as conn:
        events = conn.execute("SELECT id, payload FROM ordermon_events").fetchall()
    assert heard == {"ordermon_events": {str(e["id"]) for e in events}, "intruder": set()}
    assert len(events) == 6 and not any("pin" in e["payload"] for e in events)


def test_the_settings_row_follows_the_config(db_url: str, sim: simulator.Simulator) -> None:
    """The trigger's settings are the latest sweep's config; an unchanged one writes nothing."""
    with db.connect(db_url, autocommit=True) as conn:
        cfg = config.parse(config_document(db_url, sim.url, notify={"include_pin": True}), {})
        sweep.run(conn, cfg, sweep.Options())
        first = conn.execute("SELECT * FROM ordermon_settings").fetchall()
        assert [(r["notify_channel"], r["include_pin"]) for r in first] == [
            ("ordermon_events", True)
        ]
        sweep.run(conn, cfg, sweep.Options())
        assert conn.execute("SELECT * FROM ordermon_settings").fetchall() == first
        quiet = config.parse(config_document(db_url, sim.url, notify={"pg_channel": None}), {})
        sweep.run(conn, quiet, sweep.Options())
        row = conn.execute("SELECT notify_channel, include_pin FROM ordermon_settings").fetchone()
        assert row == {"notify_channel": "", "include_pin": False}


def _write(path: Path, database: dict[str, Any]) -> Path:
    document = config_document("unused", "http://unused")
    document["database"] = database
    path.write_text(yaml.safe_dump(document))
    return path


def test_migrate_through_the_pooler_needs_migrate_url(
    server_dsn: str, empty_db_url: str, pgbouncer: int, tmp_path: Path
) -> None:
    """database.url at the pooler: migrate is refused with what to do, no traceback, nothing
    done; given migrate_url it migrates over that, and the sweeps then work through the pooler."""
    with db.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(db.platform_schema().encode())
    hinted = bouncer.pooled(empty_db_url, pgbouncer)
    plain = bouncer.pooled(empty_db_url, pgbouncer, hint=False)
    for database in ({"url": hinted}, {"url": plain, "pooler": "transaction"}):
        refused = run_cli("migrate", "--config", str(_write(tmp_path / "c.yaml", database)))
        assert refused.returncode == 1, refused
        assert "migrate needs a direct connection to PostgreSQL" in refused.stderr
        assert "set database.migrate_url" in refused.stderr and "Traceback" not in refused.stderr
    with db.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('ordermon_migrations') AS t").fetchone() == {
            "t": None
        }
    both = _write(tmp_path / "c.yaml", {"url": hinted, "migrate_url": empty_db_url})
    applied = run_cli("migrate", "--config", str(both))
    assert applied.returncode == 0 and applied.stdout.startswith("applied: 001_"), applied
    assert "010_pooler_safe_events" in applied.stdout
    swept = run_cli("sweep", "--config", str(both))
    assert swept.returncode == 0, swept


def test_migrate_probe_sees_a_lock_it_does_not_hold(db_url: str) -> None:
    """The probe's query reads the lock's key as pg_locks shows it: held after the lock, and
    a clear refusal when the session that took it is not this one."""
    with db.connect(db_url, autocommit=True) as conn:
        migrate._lock(conn)
        migrate._check_session_kept(conn)
        conn.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": migrate.ADVISORY_LOCK_KEY})
        with pytest.raises(errors.MigrationError, match="seems to go through a transaction pooler"):
            migrate._check_session_kept(conn)


def test_migrate_run_refuses_a_pooled_connection(db_url: str, pgbouncer: int) -> None:
    with (
        db.connect(bouncer.pooled(db_url, pgbouncer), autocommit=True) as conn,
        pytest.raises(errors.MigrationError, match=r"set database\.migrate_url"),
    ):
        migrate.run(conn)


def test_sslmode_and_certificates_reach_libpq(db_url: str) -> None:
    """The hint goes, the rest of the URL is libpq's: the test server has no SSL, so
    sslmode=require is refused by libpq itself (the message says so, without the password)."""
    bouncer.require_tcp(db_url)
    params = psycopg.conninfo.conninfo_to_dict(db_url)
    name, host, port = params["dbname"], params["host"], params.get("port") or 5432
    server = f"postgresql://postgres@{host}:{port}"
    for url in (
        f"postgresql://postgres:Pw-77c1d0@{host}:{port}/"
        f"{name}?sslmode=require&ordermon_pooler=transaction",
        f"host={host} port={port} user=postgres password=Pw-77c1d0 dbname={name} "
        "ordermon_pooler=transaction sslmode=require",
    ):
        with pytest.raises(errors.DatabaseError) as caught:
            db.connect(url)
        assert "SSL" in str(caught.value) and "Pw-77c1d0" not in str(caught.value)
    with db.connect(f"{server}/{name}?sslmode=disable&ordermon_pooler=transaction") as conn:
        assert conn.info.get_parameters().get("sslmode", "disable") == "disable"
        assert db.pooling_of(conn) == "transaction"


def test_a_demo_sized_run_of_sweeps_through_the_pooler(direct_db_url: str, pgbouncer: int) -> None:
    """The demo's providers and orders, its sweeps every second through PgBouncer (pool of 2
    for the sweep and the test's own connection), until every order it can settle is settled."""
    with (
        db.connect(direct_db_url, autocommit=True) as conn,
        simulator.Simulator(kod=demo.KOD, sifre=demo.SIFRE) as fast,
        simulator.Simulator(token=demo.TOKEN, latency=0.2) as slow,
        simulator.Simulator(token=demo.TOKEN) as flaky,
    ):
        pooled = bouncer.pooled(direct_db_url, pgbouncer)
        cfg = demo._config(pooled, fast.url, slow.url, flaky.url)
        assert cfg.database_pooler == "transaction"
        orders = demo._dispatch(conn, {"fast": fast, "slow": slow, "flaky": flaky}, 40)
        started = time.monotonic()
        runs = 0
        while runs == 0 or (time.monotonic() - started < 60 and not demo._settled(conn)):
            runner.once(cfg, sweep.Options())
            runs += 1
            time.sleep(0.5)
        assert demo._settled(conn), f"not settled after {runs} sweeps"
        states = conn.execute(
            "SELECT e.state, count(*) AS n FROM ordermon_enrolments e GROUP BY 1"
        ).fetchall()
        refunds = conn.execute(
            "SELECT order_id, count(*) AS n FROM ordermon_refunds GROUP BY 1 HAVING count(*) > 1"
        ).fetchall()
    assert len(orders) == 40 and refunds == []
    counted = {r["state"]: r["n"] for r in states}
    assert counted.get("done", 0) >= 20 and counted.get("waiting", 0) == 4  # the down provider's
    assert uuid.UUID(str(orders[0]["id"]))


def test_least_privilege_through_the_pooler(
    server_dsn: str,
    shop: dict[str, str],  # noqa: F811 (the fixture imported above)
    sim: simulator.Simulator,
    tmp_path: Path,
) -> None:
    """A role with only the README's grants: migrate over migrate_url (the owner of the shop's
    tables running what it is handed), then a sweep that refunds and a status, both through
    PgBouncer. No superuser in ordermon's path."""
    [public, *_] = _readme_blocks()
    _grant(shop, public, shop["role"])
    with bouncer.for_tests(server_dsn, users=(shop["role"],)) as port:
        path = _write(
            tmp_path / "c.yaml",
            {"url": bouncer.pooled(shop["role_url"], port), "migrate_url": shop["role_url"]},
        )
        document = yaml.safe_load(path.read_text())
        document["providers"] = config_document("u", sim.url)["providers"]
        path.write_text(yaml.safe_dump(document))
        _migrate_with_the_owners_help(shop, str(path))
        _refund_by_a_sweep(shop, str(path), sim)
        assert run_cli("status", "--config", str(path)).returncode in (0, 3)
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            pooled = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %(role)s "
                "AND application_name = 'ordermon'",
                {"role": shop["role"]},
            ).fetchone()
        # Server connections the pooler keeps open for the role: the sweep went through it.
        assert pooled is not None and pooled[0] >= 1
