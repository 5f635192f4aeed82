"""Telling the rest of the shop: the outbox, NOTIFY and signed webhooks."""

import hmac
import http.server
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from ordermon import config, db, providers
from ordermon.dev import simulator
from ordermon.events import webhooks
from ordermon.sweep import enrolment, outcome, runner, store, sweep
from tests.conftest import (
    FakeClock,
    add_order,
    add_user,
    config_document,
    run_cli,
    write_config,
)

SECRET = "whsec-0123456789abcdef"


class _Hook(http.server.BaseHTTPRequestHandler):
    """A receiver that verifies every signature and can be told to fail or hang."""

    received: ClassVar[list[dict[str, Any]]] = []
    mode: ClassVar[list[str]] = ["ok"]
    bad_signatures: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        timestamp = self.headers["X-Ordermon-Timestamp"]
        expected = webhooks.sign(SECRET, timestamp, body)
        if not hmac.compare_digest(expected, self.headers["X-Ordermon-Signature"]):
            type(self).bad_signatures.append(self.headers["X-Ordermon-Event-Id"])
        mode = type(self).mode[0]
        if mode == "hang":
            time.sleep(30)
        status = 500 if mode == "fail" else 204
        if status == 204:
            type(self).received.append(json.loads(body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "mode": ["ok"], "bad_signatures": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


def _notify(url: str, **extra: Any) -> dict[str, Any]:
    hooks = [{"name": "backend", "url": url, "secret": SECRET, "timeout": "1s"}]
    return {"webhooks": hooks, "retry_base_delay": "1s", "retry_max_delay": "2s", **extra}


def _settle(cfg: config.Config, clock: FakeClock, rounds: int = 30) -> None:
    for _ in range(rounds):
        runner.once(cfg, sweep.Options(), clock=clock)
        clock.advance(5)


def test_every_committed_transition_is_delivered_in_order(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, hook: tuple[str, type[_Hook]]
) -> None:
    """Each final transition reaches the receiver, signed, and an order's events arrive in the
    order they happened (an expiry, then the completion after a requeue)."""
    url, receiver = hook
    clock = FakeClock()
    user = add_user(conn)
    fates = {"c": "completed:PIN", "f": "failed", "x": "processing"}
    orders = {ref: add_order(conn, user, ref, sent_at=clock.now) for ref in fates}
    for ref, step in fates.items():
        sim.script(ref, step)
    document = config_document(
        db_url,
        sim.url,
        notify=_notify(url),
        schedule={
            "first_check_after": "0s",
            "base_delay": "5s",
            "jitter": 0,
            "give_up_after": "20s",
        },
    )
    cfg = config.parse(document, {})
    _settle(cfg, clock, rounds=8)
    sim.script("x", "completed:LATE")
    from ordermon.ops import requeue

    requeue.run(
        conn,
        cfg,
        [str(orders["x"])],
        expired=False,
        provider_name=None,
        dry_run=False,
        now=clock.now,
    )
    _settle(cfg, clock, rounds=3)
    events = list(conn.execute("SELECT id, type, order_id FROM ordermon_events ORDER BY seq"))
    by_order: dict[str, list[str]] = {}
    for event in events:
        by_order.setdefault(str(event["order_id"]), []).append(event["type"])
    assert by_order == {
        str(orders["c"]): ["order.completed"],
        str(orders["f"]): ["order.failed"],
        str(orders["x"]): ["order.expired", "order.completed"],
    }
    delivered: dict[str, list[str]] = {}
    for payload in receiver.received:
        delivered.setdefault(payload["order_id"], []).append(payload["type"])
    assert delivered == by_order  # every event, once, and in order within each order
    assert receiver.bad_signatures == []
    payloads = {(p["order_id"], p["type"]): p for p in receiver.received}
    completed = payloads[(str(orders["c"]), "order.completed")]
    assert completed["pin_present"] is True and "pin" not in completed
    assert completed["status"] == "approved" and completed["externalStatus"] == "done"
    assert payloads[(str(orders["f"]), "order.failed")]["refund_amount"] == 12.5
    assert {d["state"] for d in conn.execute("SELECT state FROM ordermon_deliveries")} == {
        "delivered"
    }


def test_no_event_for_a_rolled_back_transition(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """A transition whose transaction fails leaves no event behind."""
    order = add_order(conn, add_user(conn), "r1")
    conn.execute("""CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION 'ledger is read-only today'; END $$""")
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON wallet_transactions "
        "FOR EACH ROW EXECUTE FUNCTION boom()"
    )
    cfg = config.parse(config_document(db_url, sim.url), {})
    rules = sweep.rules(cfg.providers)
    enrolment.enrol(conn, rules)
    clock = FakeClock()
    [claim] = store.claim(conn, rules, 1, uuid.uuid4(), clock.now, clock.now + cfg.sweep.lease)
    sim.script("r1", "failed")
    check = providers.build(cfg.providers[0]).check(["r1"])["r1"]
    ctx = outcome.Context("alaya", cfg.policy, "refund", None, clock.now, 0.0)
    assert outcome.record(conn, claim, check, ctx) == outcome.ERROR  # that order's error
    assert conn.execute("SELECT count(*) AS n FROM ordermon_events").fetchone() == {"n": 0}
    row = conn.execute(
        "SELECT status FROM product_orders WHERE id = %(id)s", {"id": order}
    ).fetchone()
    assert row == {"status": "pending"}


def test_listen_hears_exactly_the_committed_events(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, direct_db_url: str
) -> None:
    """A LISTEN connection is told of every committed event, and of nothing else."""
    # Straight to PostgreSQL: a LISTEN cannot work through a transaction pooler.
    with psycopg.connect(direct_db_url, autocommit=True) as listener:
        listener.execute("LISTEN ordermon_events")
        user = add_user(conn)
        for ref, step in {"a": "completed:P", "b": "failed", "c": "processing"}.items():
            sim.script(ref, step)
            add_order(conn, user, ref)
        with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
            conn.execute("SELECT set_config('ordermon.notify_channel', 'ordermon_events', true)")
            conn.execute(
                "INSERT INTO ordermon_enrolments (order_id, provider_id, reference, "
                "sent_at, next_check_at, deadline) SELECT id, 'p', 'x', now(), now(), "
                "now() FROM product_orders LIMIT 1"
            )
            conn.execute("UPDATE ordermon_enrolments SET state = 'expired' WHERE reference = 'x'")
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'roll it all back'; END $$")
        cfg = config.parse(config_document(db_url, sim.url), {})
        sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
        heard: list[dict[str, str]] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(heard) < 2:
            select.select([listener.fileno()], [], [], 0.5)
            heard.extend(json.loads(n.payload) for n in listener.notifies(timeout=0.1))
    committed = {
        (str(e["id"]), e["type"]) for e in conn.execute("SELECT id, type FROM ordermon_events")
    }
    assert {(h["id"], h["type"]) for h in heard} == committed
    assert len(committed) == 2 and len(heard) == 2


def test_sigkill_between_commit_and_delivery(
    conn: db.Connection,
    sim: simulator.Simulator,
    db_url: str,
    hook: tuple[str, type[_Hook]],
    tmp_path: Path,
) -> None:
    """A sweep killed after an event committed and before it was delivered: the next sweep
    delivers it."""
    url, receiver = hook
    user = add_user(conn)
    sim.script("fast", "completed:P")
    sim.script("slow", "slow:20:processing")
    add_order(conn, user, "fast")
    add_order(conn, user, "slow")
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url, notify=_notify(url))
    victim = subprocess.Popen(
        [sys.executable, "-m", "ordermon", "sweep", "--config", str(config_path)],
        env={k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = conn.execute("SELECT count(*) AS n FROM ordermon_events").fetchone()
        if row and row["n"] == 1:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert receiver.received == []
    assert run_cli("sweep", "--config", str(config_path)).returncode == 0
    assert [p["type"] for p in receiver.received] == ["order.completed"]


def test_receiver_down_then_dead_then_redelivered(
    conn: db.Connection,
    sim: simulator.Simulator,
    db_url: str,
    hook: tuple[str, type[_Hook]],
    tmp_path: Path,
) -> None:
    """Events wait while the receiver fails, die after max_attempts, show in status, and
    `events redeliver --dead` brings them back."""
    url, receiver = hook
    receiver.mode[0] = "fail"
    user = add_user(conn)
    sim.script("a", "completed:P")
    add_order(conn, user, "a")
    clock = FakeClock()
    cfg = config.parse(config_document(db_url, sim.url, notify=_notify(url, max_attempts=3)), {})
    _settle(cfg, clock, rounds=2)
    assert conn.execute("SELECT state, attempts FROM ordermon_deliveries").fetchone() == {
        "state": "pending",
        "attempts": 2,
    }
    _settle(cfg, clock, rounds=3)
    assert conn.execute("SELECT state FROM ordermon_deliveries").fetchone() == {"state": "dead"}
    config_path = write_config(
        tmp_path / "c.yaml", db_url, sim.url, notify=_notify(url, max_attempts=3)
    )
    status = run_cli("status", "--json", "--config", str(config_path))
    assert status.returncode == 3 and json.loads(status.stdout)["dead_events"] == 1
    listed = run_cli("events", "list", "--dead", "--json", "--config", str(config_path))
    assert [row["state"] for row in json.loads(listed.stdout)] == ["dead"]
    receiver.mode[0] = "ok"
    # An id that names no event is refused, and the real one beside it is not sent again.
    [real] = [row["id"] for row in json.loads(listed.stdout)]
    typo = str(uuid.uuid4())
    refused = run_cli("events", "redeliver", str(real), typo, "--config", str(config_path))
    assert refused.returncode == 1 and f"no event {typo}; nothing was sent again" in refused.stderr
    assert conn.execute("SELECT state FROM ordermon_deliveries").fetchone() == {"state": "dead"}
    again = run_cli("events", "redeliver", "--dead", "--config", str(config_path))
    assert again.returncode == 0 and again.stdout.startswith("1 delivery will be sent again")
    assert run_cli("deliver", "--config", str(config_path)).stdout.startswith("1 delivered")
    assert [p["type"] for p in receiver.received] == ["order.completed"]


def test_slow_receiver_cannot_starve_checks(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, hook: tuple[str, type[_Hook]]
) -> None:
    """A hanging receiver costs a sweep at most its delivery time budget."""
    url, receiver = hook
    receiver.mode[0] = "hang"
    user = add_user(conn)
    for i in range(6):
        sim.script(f"h{i}", "completed:P")
        add_order(conn, user, f"h{i}")
    cfg = config.parse(
        config_document(db_url, sim.url, notify=_notify(url, time_budget="2s", concurrency=2)), {}
    )
    started = time.monotonic()
    report = runner.once(cfg, sweep.Options())
    assert report.counts["completed"] == 6
    assert time.monotonic() - started < 6  # 2 s budget, plus one round of 1 s timeouts
    assert report.delivery["retried"] >= 1 and report.delivery["delivered"] == 0
