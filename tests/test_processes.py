"""Real processes: several sweeps at once, and a sweep killed in the middle of its calls."""

import decimal
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import add_user, run_cli, write_config

# Orders left processing are asked again 300 ms later.
FAST_RETRIES = {
    "first_check_after": "0s",
    "base_delay": "300ms",
    "max_delay": "300ms",
    "jitter": 0,
    "give_up_after": "1h",
}


def _populate(conn: db.Connection, sim: simulator.Simulator, count: int) -> tuple[uuid.UUID, int]:
    """``count`` due orders with a real day's mix of fates; returns the user and the refunds due."""
    user = add_user(conn, "0")
    failures = 0
    rows = []
    for i in range(count):
        reference = f"ref{i:06d}"
        fate = i % 10
        if fate < 7:
            sim.script(reference, f"completed:PIN-{i}")
        elif fate < 9:
            sim.script(reference, "processing", f"completed:PIN-{i}")
        else:
            sim.script(reference, "failed")
            failures += 1
        rows.append(reference)
    with conn.cursor() as cursor:
        cursor.executemany(
            """INSERT INTO product_orders (id, status, "userId", "sellPriceAmount", "providerId",
                   "externalStatus", "sentAt", provider_referans)
               VALUES (gen_random_uuid(), 'pending', %(user)s, 1.00,
                       '3b6d4c1e-0000-4000-8000-000000000001', 'sent',
                       now() - interval '1 minute', %(ref)s)""",
            [{"user": user, "ref": r} for r in rows],
        )
    return user, failures


def _sweep_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "ordermon", "sweep", "--config", str(config_path)]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}


def _sweep_until_settled(config_path: Path, conn: db.Connection, rounds: int = 20) -> None:
    for _ in range(rounds):
        left = conn.execute(
            "SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting'"
        ).fetchone()
        if left == {"n": 0}:
            return
        result = run_cli("sweep", "--config", str(config_path))
        assert result.returncode == 0, result.stderr
        time.sleep(0.5)


def _assert_exactly_once(
    conn: db.Connection,
    sim: simulator.Simulator,
    user: uuid.UUID,
    failures: int,
    count: int,
    unrecorded: Counter[str] | None = None,
) -> None:
    statuses = conn.execute("SELECT status, count(*) AS n FROM product_orders GROUP BY 1")
    assert {r["status"]: r["n"] for r in statuses} == {
        "approved": count - failures,
        "rejected": failures,
    }
    finals = conn.execute(
        """SELECT order_id, count(*) AS n FROM ordermon_attempts
           WHERE applied IN ('completed', 'refunded', 'rejected', 'held')
           GROUP BY order_id HAVING count(*) <> 1"""
    ).fetchall()
    assert finals == []
    wallet = conn.execute(
        """SELECT count(*) AS n, count(DISTINCT "orderId") AS orders, sum(amount) AS total
           FROM wallet_transactions"""
    ).fetchone()
    assert wallet == {
        "n": failures,
        "orders": failures,
        "total": decimal.Decimal(failures) if failures else None,
    }
    balance = conn.execute("SELECT balance FROM users WHERE id = %(id)s", {"id": user}).fetchone()
    assert balance == {"balance": decimal.Decimal(failures)}
    attempts = {
        r["reference"]: r["attempts"]
        for r in conn.execute("SELECT reference, attempts FROM ordermon_enrolments")
    }
    # Attempts count the answers recorded: a call whose sweep was killed before recording it
    # (``unrecorded``) spent nothing.
    calls = sim.counts() - (unrecorded or Counter())
    over = {ref: (calls[ref], n) for ref, n in attempts.items() if calls[ref] > n}
    assert over == {}


def test_four_sweeps_at_once(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Four sweep processes on 2,000 due orders: each order finalised once, never asked more
    often than its attempts, no refund twice, and the work shared."""
    count = 2000
    user, failures = _populate(conn, sim, count)
    sim.latency = 0.05  # a few seconds of work, so that all four processes get a share
    config_path = write_config(
        tmp_path / "c.yaml",
        db_url,
        sim.url,
        schedule=FAST_RETRIES,
    )
    procs = [
        subprocess.Popen(
            _sweep_command(config_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert all(out == "" for out, _ in outputs)  # no terminal, no -v: silent on success
    runs = conn.execute("SELECT claimed FROM ordermon_runs WHERE command = 'sweep'").fetchall()
    assert sum(1 for r in runs if r["claimed"] > 0) >= 2
    _sweep_until_settled(config_path, conn)
    _assert_exactly_once(conn, sim, user, failures, count)


def test_sweep_killed_mid_calls(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """A sweep SIGKILLed during its provider calls: the next sweeps after the lease finish every
    order; nothing lost, nothing refunded twice."""
    count = 300
    user, failures = _populate(conn, sim, count)
    sim.latency = 0.1
    config_path = write_config(
        tmp_path / "c.yaml",
        db_url,
        sim.url,
        schedule=FAST_RETRIES,
        sweep={"batch_size": 50, "concurrency": 8, "lease": "4s"},
        provider={"timeout": "2s"},
    )
    victim = subprocess.Popen(
        _sweep_command(config_path),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(sim.requests) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    recorded = Counter(
        {
            r["reference"]: r["n"]
            for r in conn.execute(
                "SELECT e.reference, count(*) AS n FROM ordermon_attempts a "
                "JOIN ordermon_enrolments e ON e.id = a.enrolment_id GROUP BY 1"
            )
        }
    )
    unrecorded = sim.counts() - recorded  # asked by the dead sweep, never recorded
    held = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE claim_token IS NOT NULL"
    ).fetchone()
    assert held is not None and held["n"] > 0  # it died holding claims
    unfinished = conn.execute(
        "SELECT count(*) AS n FROM ordermon_runs WHERE finished_at IS NULL"
    ).fetchone()
    assert unfinished == {"n": 1}
    sim.latency = 0.0
    time.sleep(4.5)  # let the dead sweep's leases run out
    _sweep_until_settled(config_path, conn)
    _assert_exactly_once(conn, sim, user, failures, count, unrecorded)
