"""Real processes and the clock: sweep.time_limit ends the process, no request starts without
lease enough for its timeout, and killed runs spend no attempts."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ordermon import db
from ordermon.dev import simulator
from ordermon.sweep import lanes, sweep
from tests.conftest import (
    add_order,
    add_user,
    enrolment_of,
    make_config,
    run_cli,
    write_config,
)

# The lease must be at least twice the provider timeout.
SHORT = {"timeout": "2s"}
LIMITED = {
    "batch_size": 50,
    "concurrency": 4,
    "lease": "10s",
    "soft_time_limit": "2s",
    "time_limit": "3s",
}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}


@contextlib.contextmanager
def _trickling_headers() -> Iterator[str]:
    """A server that sends a status line, then one header byte every half second for a minute:
    each read gets a byte well within any read timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(client: socket.socket) -> None:
        with client:
            try:
                client.recv(65536)
                client.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(120):
                    if stop.wait(0.5):
                        return
                    client.sendall(b"x")
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def _run_limited(conn: db.Connection, db_url: str, url: str, tmp_path: Path) -> float:
    user = add_user(conn)
    for i in range(8):
        add_order(conn, user, f"r{i}")
    config_path = write_config(
        tmp_path / "c.yaml", db_url, url, sweep=LIMITED, provider=SHORT | {"base_url": url}
    )
    started = time.monotonic()
    result = run_cli("sweep", "--config", str(config_path), timeout=90)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    run = conn.execute("SELECT stopped_by, finished_at FROM ordermon_runs").fetchone()
    assert run is not None and run["stopped_by"] == "time_limit" and run["finished_at"]
    held = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE claim_token IS NOT NULL"
    ).fetchone()
    assert held == {"n": 0}  # abandoned calls' claims are released, not left to the lease
    spent = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE state <> 'waiting' OR attempts <> 0"
    ).fetchone()
    assert spent == {"n": 0}
    return took


def test_time_limit_ends_the_process_while_calls_hang(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Every call hanging at a 3 s time limit: the process exits 0 within seconds, the run says
    time_limit, no order spent an attempt, every claim is released or within its lease."""
    sim.default = ["hang:60"]
    took = _run_limited(conn, db_url, sim.url, tmp_path)
    assert took < 20


def test_time_limit_ends_the_process_while_headers_trickle(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """Calls that never end (a header byte every half second): the process still exits 0
    within seconds of the time limit; the calls are abandoned, not joined."""
    with _trickling_headers() as url:
        took = _run_limited(conn, db_url, url, tmp_path)
    assert took < 20


def test_no_request_starts_without_lease_for_its_timeout(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """A worker does not send a request the claim's lease would not outlast: it comes back
    unsent; with lease enough it is sent."""
    cfg = make_config(db_url, sim.url, sweep={"lease": "10s"}, provider=SHORT)
    lane = lanes.Lane(
        cfg.providers[0], cfg, sweep.rules(cfg.providers)[0], threading.BoundedSemaphore(4)
    )
    try:
        [(_, short)] = lane.submit(["r1"], time.monotonic() + 1.5)
        assert short.result(timeout=10)["r1"].sent is False
        assert sim.count("r1") == 0
        [(_, enough)] = lane.submit(["r1"], time.monotonic() + 10)
        assert enough.result(timeout=10)["r1"].sent is True
        assert sim.count("r1") == 1
    finally:
        lane.close(wait=True)


def test_killed_sweeps_spend_no_attempts(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Sweeps SIGKILLed while their call hangs, three times with max_attempts 2: the order is
    not expired and has spent nothing until a check really answers, which counts one."""
    order = add_order(conn, add_user(conn), "r1")
    sim.script("r1", "hang:60", "hang:60", "hang:60", "processing")
    config_path = write_config(
        tmp_path / "c.yaml",
        db_url,
        sim.url,
        schedule={"first_check_after": "0s", "base_delay": "1s", "jitter": 0, "max_attempts": 2},
        sweep={"batch_size": 50, "concurrency": 4, "lease": "4s"},
        provider=SHORT,
    )
    for round_ in range(1, 4):
        victim = subprocess.Popen(
            [sys.executable, "-m", "ordermon", "sweep", "--config", str(config_path)],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while sim.count("r1") < round_ and time.monotonic() < deadline:
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert sim.count("r1") == round_
        enrolment = enrolment_of(conn, order)
        assert (enrolment["state"], enrolment["attempts"]) == ("waiting", 0)
        time.sleep(4.2)  # the dead sweep's lease runs out
    result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    assert sim.count("r1") == 4
    enrolment = enrolment_of(conn, order)
    assert (enrolment["state"], enrolment["attempts"]) == ("waiting", 1)
