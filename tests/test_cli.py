"""The command line as operators and cron use it: exit codes, output, `check`, secrets."""

import datetime as dt
import json
import socket
import uuid
from pathlib import Path

import yaml

from ordermon import db
from ordermon.dev import simulator
from ordermon.sweep import enrolment, store, sweep
from tests.conftest import (
    SIFRE,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    make_config,
    order_row,
    provider_doc,
    run_cli,
    write_config,
)


def _config(tmp_path: Path, db_url: str, sim_url: str) -> str:
    return str(write_config(tmp_path / "c.yaml", db_url, sim_url))


def test_check_records_like_a_sweep(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`check ORDER_ID --json` asks now, whatever the schedule, and records the answer."""
    order = add_order(conn, add_user(conn), "r1", sent_at=dt.datetime.now(dt.UTC))
    sim.script("r1", "completed:PIN-1")
    config_path = _config(tmp_path, db_url, sim.url)
    result = run_cli("check", str(order), "--json", "--show-pin", "--config", config_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["outcome"], data["pin"], data["applied"], data["dry_run"]) == (
        "completed",
        "PIN-1",
        "completed",
        False,
    )
    assert order_row(conn, order)["pinCode"] == "PIN-1"
    assert enrolment_of(conn, order)["attempts"] == 1
    again = run_cli("check", str(order), "--config", config_path)
    assert again.returncode == 1
    assert (
        again.stderr.strip()
        == f"ordermon: order {order} is approved, not pending: nothing to check"
    )


def test_check_dry_run_writes_nothing(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """--dry-run shows the provider's answer and writes nothing."""
    order = add_order(conn, add_user(conn), "r1")
    before = order_row(conn, order)
    sim.script("r1", "failed")
    result = run_cli(
        "check", str(order), "--dry-run", "--config", _config(tmp_path, db_url, sim.url)
    )
    assert result.returncode == 0, result.stderr
    assert "failed" in result.stdout and "--dry-run" in result.stdout
    assert order_row(conn, order) == before
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM ordermon_attempts) AS a, "
        "(SELECT count(*) FROM wallet_transactions) AS w"
    ).fetchone()
    assert counts == {"a": 0, "w": 0}


def test_check_refusals(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Unknown, unconfigured, unsendable and claimed orders: exit 1 with one line each."""
    user = add_user(conn)
    config_path = _config(tmp_path, db_url, sim.url)
    other = add_order(conn, user, "x", provider_id="nobody")
    held = add_order(conn, user, "y", external_status="failed")
    no_ref = add_order(conn, user, None)
    claimed = add_order(conn, user, "z")
    cfg = make_config(db_url, sim.url)
    rules = sweep.rules(cfg.providers)
    enrolment.enrol(conn, rules)
    now = dt.datetime.now(dt.UTC)
    store.claim(conn, rules, 10, uuid.uuid4(), now, now + dt.timedelta(minutes=5))
    cases = {
        str(uuid.uuid4()): "no such order",
        str(other): "its provider 'nobody' is not in the configuration",
        str(held): "externalStatus is 'failed'",
        str(no_ref): "has no provider_referans",
        str(claimed): "is being checked by a sweep right now",
    }
    for order_id, says in cases.items():
        result = run_cli("check", order_id, "--config", config_path)
        assert result.returncode == 1, (order_id, result.stderr)
        assert says in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert sim.requests == []
    bad = run_cli("check", "not-a-uuid", "--config", config_path)
    assert bad.returncode == 2 and "is not an order id" in bad.stderr


def test_sweep_output(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Silent without a terminal; -v says what happened; --json gives the counts."""
    user = add_user(conn)
    config_path = _config(tmp_path, db_url, sim.url)
    add_order(conn, user, "a")
    quiet = run_cli("sweep", "--config", config_path)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    add_order(conn, user, "b")
    sim.script("b", "completed:P")
    verbose = run_cli("sweep", "-v", "--config", config_path)
    assert verbose.returncode == 0
    assert "completed -> completed" in verbose.stdout
    assert "1 enrolled, 1 claimed, 1 completed" in verbose.stdout
    add_order(conn, user, "c")
    as_json = json.loads(run_cli("sweep", "--json", "--config", config_path).stdout)
    assert as_json["enrolled"] == 1
    assert as_json["claimed"] == as_json["processing"] >= 1  # "a" may be due again too


def test_usage_and_configuration_errors_exit_2(tmp_path: Path, db_url: str) -> None:
    """A bad key or option names itself and exits 2, without a traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("database: {url: x}\nsweep: {lease: soon}\n")
    result = run_cli("sweep", "--config", str(bad))
    assert result.returncode == 2
    assert "sweep.lease: expected a duration like 20s, got 'soon'" in result.stderr
    assert "Traceback" not in result.stderr
    config_path = _config(tmp_path, db_url, "http://127.0.0.1:9")
    unknown = run_cli("sweep", "--provider", "nope", "--config", config_path)
    assert unknown.returncode == 2 and "--provider nope: no such provider" in unknown.stderr
    missing = run_cli("sweep", "--config", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "cannot read config file" in missing.stderr
    assert run_cli("sweep", "--limit", "0", "--config", config_path).returncode == 2


def test_database_down_exits_1(tmp_path: Path) -> None:
    """An unreachable database is exit 1 with the URL shown without its password."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://shop:hunter2@127.0.0.1:{port}/shop"
    config_path = write_config(tmp_path / "c.yaml", url, "http://127.0.0.1:9")
    result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 1
    assert "cannot connect to the database at postgresql://shop:***@127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_secrets_never_leave(conn: db.Connection, db_url: str, tmp_path: Path) -> None:
    """sifre never reaches stdout, stderr or any ordermon table, whatever the provider does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    user = add_user(conn)
    with simulator.Simulator() as echo:  # no kod/sifre check: it answers everything
        echo.script("echo", f"raw:OK|7| |sifre={SIFRE}")
        add_order(conn, user, "echo")
        add_order(conn, user, "other")
        outputs = []
        for base_url in (echo.url, f"http://127.0.0.1:{dead_port}"):
            config_path = _config(tmp_path, db_url, base_url)
            outputs.append(run_cli("sweep", "-v", "--json", "--config", config_path))
            conn.execute("UPDATE ordermon_enrolments SET next_check_at = now()")
    for result in outputs:
        assert SIFRE not in result.stdout + result.stderr
    dump = "".join(
        str(row)
        for table in ("ordermon_attempts", "ordermon_enrolments", "ordermon_runs")
        for row in conn.execute(f"SELECT * FROM {table}".encode())
    )
    assert "connection refused" in dump and "sifre=***" in dump
    assert SIFRE not in dump


def test_help_runs_without_config() -> None:
    """`ordermon --help` lists the commands."""
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("migrate", "sweep", "check", "demo"):
        assert command in result.stdout


def test_embedded_database_url(tmp_path: Path) -> None:
    """`database.url: embedded` starts a private PostgreSQL under the user's data directory."""
    from ordermon.dev import embedded

    config_path = write_config(tmp_path / "c.yaml", "embedded", "http://127.0.0.1:9")
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    try:
        result = run_cli("migrate", "--config", str(config_path), env=env)
        # It started and answered: a fresh private database has no shop tables.
        assert result.returncode == 1, result.stderr
        assert "no product_orders table" in result.stderr
        assert (tmp_path / "data" / "ordermon" / "postgres" / "PG_VERSION").is_file()
    finally:
        embedded.stop(tmp_path / "data" / "ordermon" / "postgres")


def test_log_format_json_and_quiet(conn: db.Connection, db_url: str, tmp_path: Path) -> None:
    """--log-format json: one JSON object per line on stderr; -q: nothing at all."""
    with simulator.Simulator(token="right") as sim:
        add_order(conn, add_user(conn), "7001", provider_id="barakat-id")
        document = config_document(
            db_url, sim.url, providers=[provider_doc("barakat", sim.url, token="wrong")]
        )
        config_path = tmp_path / "c.yaml"
        config_path.write_text(yaml.safe_dump(document))
        logged = run_cli("sweep", "--log-format", "json", "--config", str(config_path))
        quiet = run_cli("sweep", "-q", "--config", str(config_path))
    assert logged.returncode == 0 and logged.stdout == ""
    [line] = logged.stderr.strip().splitlines()
    event = json.loads(line)
    assert event["event"] == "sweep" and event["claimed"] == 1 and event["error"] == 1
    assert "refused ordermon's credentials" in event["problems"][0]
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert run_cli("sweep", "--log-format", "xml", "--config", str(config_path)).returncode == 2


def test_check_an_order_that_names_no_provider(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """An empty "providerId" is said as such, not as a provider called '' or None."""
    order = add_order(conn, add_user(conn), "np-1", provider_id="")
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url)
    result = run_cli("check", str(order), "--config", str(config_path))
    assert result.returncode == 1
    assert f'order {order} names no provider ("providerId" is empty)' in result.stderr
