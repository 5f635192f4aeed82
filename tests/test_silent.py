"""Nothing silent: no order abandoned by a race, no event skipped by a late commit, no
dispatched order unwatched or waiting past its deadline without `status` saying so (exit 3),
and no database password in any message, whatever the URL's form."""

import datetime as dt
import http.server
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ordermon import config, db, errors
from ordermon.dev import simulator
from ordermon.events import outbox, webhooks
from ordermon.ops import check, pings, status
from ordermon.sweep import enrolment, store, sweep
from tests.conftest import (
    PROVIDER_ID,
    FakeClock,
    add_order,
    add_user,
    config_document,
    make_config,
    provider_doc,
    run_cli,
    write_config,
)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Records every POST (path and body) and answers 204."""

    received: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append((self.path, body.decode("utf-8", "replace")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def _rules(provider_id: str = PROVIDER_ID) -> list[store.ProviderRules]:
    return [
        store.ProviderRules(
            provider_id, "provider_referans", dt.timedelta(0), dt.timedelta(1), None
        )
    ]


def _wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _waiting_locks(conn: db.Connection, kind: str) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND locktype = %(kind)s",
        {"kind": kind},
    ).fetchone()
    return int(row["n"]) if row else 0


# --- #10: an order is never abandoned by two enrollers racing --------------------------------


def test_an_enroller_racing_another_never_retires_the_dispatch_it_enrols(
    conn: db.Connection, db_url: str
) -> None:
    """An enroller whose supersede runs just after another enroller committed the same
    dispatch leaves that enrolment waiting (it never retires what it is about to enrol)."""
    order = add_order(conn, add_user(conn), "raced")
    with db.connect(db_url) as sweep_conn:
        # The sweep's transaction holds the table so the other's supersede has to wait for
        # it, after that other enroller has already read the order as not enrolled.
        sweep_conn.execute("LOCK TABLE ordermon_enrolments IN SHARE ROW EXCLUSIVE MODE")

        def late_enroller() -> None:
            with db.connect(db_url, autocommit=True) as other, other.transaction():
                enrolment.enrol(other, _rules(), order_id=order)

        late = threading.Thread(target=late_enroller)
        late.start()
        _wait_for(lambda: _waiting_locks(conn, "relation") == 1, "the supersede to wait")
        enrolment.enrol_lock(sweep_conn)
        assert enrolment.enrol(sweep_conn, _rules()) == 1
        sweep_conn.commit()
        late.join(timeout=30)
    rows = list(conn.execute("SELECT state FROM ordermon_enrolments"))
    assert rows == [{"state": "waiting"}]


def test_check_enrols_under_the_sweeps_enrolment_lock(
    conn: db.Connection, db_url: str, sim: simulator.Simulator
) -> None:
    """`ordermon check` waits for a sweep's enrolment to commit before it enrols, so the
    order it checks ends enrolled once and waiting, never superseded by the race."""
    order = add_order(conn, add_user(conn), "checked")
    sim.script("checked", "processing")
    cfg = make_config(db_url, sim.url)
    results: list[check.Result] = []
    with db.connect(db_url) as sweep_conn:
        enrolment.enrol_lock(sweep_conn)

        def run_check() -> None:
            with db.connect(db_url, autocommit=True) as other:
                results.append(check.run(other, cfg, str(order)))

        checker = threading.Thread(target=run_check)
        checker.start()
        _wait_for(lambda: _waiting_locks(conn, "advisory") == 1, "check to wait for the lock")
        assert enrolment.enrol(sweep_conn, sweep.rules(cfg.providers)) == 1
        sweep_conn.commit()
        checker.join(timeout=30)
    assert [r.applied for r in results] == ["processing"]
    rows = list(conn.execute("SELECT state, attempts FROM ordermon_enrolments"))
    assert rows == [{"state": "waiting", "attempts": 1}]


# --- #11: webhooks never skip an event whose transaction commits late ------------------------


def _notify(url: str) -> dict[str, Any]:
    hooks = [{"name": "backend", "url": url + "/hook", "secret": "whsec-0123456789abcdef"}]
    return {"webhooks": hooks, "retry_base_delay": "1s", "retry_max_delay": "2s"}


def _finish(connection: db.Connection, order: uuid.UUID) -> None:
    """What a sweep's final transition does to ordermon's row: the trigger writes the event."""
    connection.execute(
        "UPDATE ordermon_enrolments SET state = 'expired', finished_at = now() "
        "WHERE order_id = %(id)s AND state = 'waiting'",
        {"id": order},
    )


def _delivered(received: list[tuple[str, str]]) -> list[str]:
    return sorted(json.loads(body)["order_id"] for _, body in received)


def test_an_event_committed_after_a_later_one_is_still_delivered(
    conn: db.Connection,
    db_url: str,
    sim: simulator.Simulator,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    """An event whose transaction took the earlier seq and committed after a later event was
    delivered is delivered too: each event exactly once."""
    url, hook = receiver
    user = add_user(conn)
    early, late = add_order(conn, user, "early"), add_order(conn, user, "late")
    cfg = config.parse(config_document(db_url, sim.url, notify=_notify(url)), {})
    with conn.transaction():
        enrolment.enrol_lock(conn)
        enrolment.enrol(conn, sweep.rules(cfg.providers))
    outbox.register(conn, cfg.notify.webhooks)
    clock = FakeClock()
    with db.connect(db_url) as tx_a, db.connect(db_url) as tx_b:
        _finish(tx_a, early)  # takes the first seq, stays open
        _finish(tx_b, late)
        tx_b.commit()
        first = webhooks.deliver(conn, cfg, clock)
        tx_a.commit()
    second = webhooks.deliver(conn, cfg, clock)
    third = webhooks.deliver(conn, cfg, clock)
    seqs = [
        r["order_id"] for r in conn.execute("SELECT order_id FROM ordermon_events ORDER BY seq")
    ]
    assert seqs == [early, late]
    assert (first.delivered, second.delivered, third.delivered) == (1, 1, 0)
    assert _delivered(hook.received) == sorted([str(early), str(late)])
    states = [r["state"] for r in conn.execute("SELECT state FROM ordermon_deliveries")]
    assert states == ["delivered", "delivered"]


def test_a_new_webhook_gets_only_the_events_committed_after_it_was_registered(
    conn: db.Connection,
    db_url: str,
    sim: simulator.Simulator,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    """A webhook added to the config gets no history: not the events committed before its
    first run, but every one committed after, even from a transaction open meanwhile."""
    url, hook = receiver
    user = add_user(conn)
    before, open_then, after = (add_order(conn, user, r) for r in ("before", "open", "after"))
    cfg = config.parse(config_document(db_url, sim.url, notify=_notify(url)), {})
    with conn.transaction():
        enrolment.enrol_lock(conn)
        enrolment.enrol(conn, sweep.rules(cfg.providers))
    _finish(conn, before)
    with db.connect(db_url) as tx_open:
        _finish(tx_open, open_then)
        outbox.register(conn, cfg.notify.webhooks)
        tx_open.commit()
    _finish(conn, after)
    webhooks.deliver(conn, cfg, FakeClock())
    assert _delivered(hook.received) == sorted([str(open_then), str(after)])


# --- #12: dispatched orders no configured provider watches; held orders ---------------------


def test_a_provider_id_typo_is_said_by_every_sweep_and_by_status(
    conn: db.Connection, db_url: str, sim: simulator.Simulator, tmp_path: Path
) -> None:
    """Orders naming a provider id that is not configured: each sweep says so once on stderr,
    and status shows them and exits 3."""
    user = add_user(conn)
    for ref in ("t1", "t2"):
        add_order(conn, user, ref)
    typo = PROVIDER_ID[:-1]
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url, provider={"id": typo})
    expected = (
        f"2 dispatched orders name provider id {PROVIDER_ID}, which is not configured: "
        "check providers[].id"
    )
    for _ in range(2):
        swept = run_cli("sweep", "--config", str(config_path))
        assert swept.returncode == 0, swept.stderr
        assert swept.stderr.count(expected) == 1, swept.stderr
    shown = run_cli("status", "--json", "--config", str(config_path))
    assert shown.returncode == 3, shown.stderr
    figures = json.loads(shown.stdout)
    rows = {r["provider_id"]: r for r in figures["providers"]}
    assert rows[PROVIDER_ID]["configured"] is False
    assert rows[PROVIDER_ID]["unwatched"] == 2
    assert rows[typo]["unwatched"] == 0
    assert expected in figures["attention"]
    table = run_cli("status", "--config", str(config_path))
    assert table.returncode == 3 and "which is not configured" in " ".join(table.stdout.split())


def test_dispatched_orders_without_a_reference_are_said_and_flagged(
    conn: db.Connection, db_url: str, sim: simulator.Simulator, tmp_path: Path
) -> None:
    """A znet order without provider_referans, a barakat order without it and without
    externalOrderId: counted per provider by sweep (stderr) and status (exit 3)."""
    user = add_user(conn)
    add_order(conn, user, None)
    add_order(conn, user, "")
    add_order(conn, user, "znet-ok")
    add_order(conn, user, None, provider_id="barakat-id")
    add_order(conn, user, None, provider_id="barakat-id", externalOrderId="ext-ok")
    add_order(conn, user, None, external_status="not_sent")  # not dispatched: not counted
    add_order(conn, user, None, status="approved")  # decided: not counted
    nameless = add_order(conn, user, "no-provider")
    conn.execute(
        'UPDATE product_orders SET "providerId" = NULL WHERE id = %(id)s', {"id": nameless}
    )
    sim.script("znet-ok", "processing")
    sim.script("ext-ok", "processing")
    document = config_document(db_url, sim.url)
    document["providers"].append(provider_doc("barakat", sim.url))
    config_path = tmp_path / "c.yaml"
    config_path.write_text(json.dumps(document))
    swept = run_cli("sweep", "--config", str(config_path))
    assert swept.returncode == 0, swept.stderr
    znet_line = "2 dispatched orders of alaya have no provider_referans"
    barakat_line = "1 dispatched order of barakat has no provider_referans nor externalOrderId"
    assert swept.stderr.count(znet_line) == 1 and swept.stderr.count(barakat_line) == 1
    assert swept.stderr.count('1 dispatched order has no "providerId"') == 1
    shown = run_cli("status", "--json", "--config", str(config_path))
    assert shown.returncode == 3
    figures = json.loads(shown.stdout)
    rows = {r["name"]: r for r in figures["providers"]}
    assert (rows["alaya"]["no_reference"], rows["barakat"]["no_reference"]) == (2, 1)
    assert rows['(no "providerId")']["unwatched"] == 1
    assert any(znet_line in reason for reason in figures["attention"])
    assert any(barakat_line in reason for reason in figures["attention"])


def test_held_orders_make_status_exit_3(
    conn: db.Connection, db_url: str, sim: simulator.Simulator, tmp_path: Path
) -> None:
    """An order the hold policy left pending for a person makes status exit 3, naming it."""
    add_order(conn, add_user(conn), "refused")
    sim.script("refused", "failed")
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url, on_failed="hold")
    assert run_cli("sweep", "--config", str(config_path)).returncode == 0
    assert conn.execute("SELECT state FROM ordermon_enrolments").fetchone() == {"state": "held"}
    shown = run_cli("status", "--json", "--config", str(config_path))
    assert shown.returncode == 3
    assert json.loads(shown.stdout)["attention"] == [
        "1 held order of alaya waits for a person (on_failed: hold): decide it, or "
        "`ordermon requeue` it"
    ]


# --- #19 (status): every order past its deadline and still waiting, with its reason ----------


def test_every_order_waiting_past_its_deadline_is_shown_with_its_reason(
    conn: db.Connection, db_url: str, sim: simulator.Simulator, tmp_path: Path
) -> None:
    """Waiting enrolments past their deadline (plus the lease as grace) are counted per
    provider and reason, and each reason makes status exit 3."""
    now = dt.datetime.now(dt.UTC)
    user = add_user(conn)
    long_ago = now - dt.timedelta(hours=2)  # give_up_after is 1h: deadlines 1h ago
    orders = {
        ref: add_order(conn, user, ref, sent_at=long_ago)
        for ref in ("never", "claimed", "failing", "pending-check")
    }
    add_order(conn, user, "fresh", sent_at=now)  # within its deadline: not counted
    add_order(conn, user, "bk1", sent_at=long_ago, provider_id="barakat-id")
    document = config_document(db_url, sim.url)
    document["providers"].append(provider_doc("barakat", sim.url))
    cfg = config.parse(document, {})
    with conn.transaction():
        enrolment.enrol_lock(conn)
        assert enrolment.enrol(conn, sweep.rules(cfg.providers)) == 6
    # An enrolment of a provider since removed from the config.
    conn.execute(
        """INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at,
               next_check_at, deadline)
           VALUES (gen_random_uuid(), 'gone-id', 'g1', now() - interval '3 hours',
                   now() - interval '3 hours', now() - interval '2 hours')"""
    )
    updates = {
        "claimed": "claim_token = gen_random_uuid(), attempts = 1, "
        "claimed_until = now() - interval '20 minutes'",
        "failing": "attempts = 3, last_checked_at = deadline - interval '5 minutes', "
        "last_outcome = 'error', next_check_at = deadline",
        "pending-check": "attempts = 2, last_checked_at = deadline - interval '5 minutes', "
        "last_outcome = 'processing', next_check_at = deadline",
    }
    for ref, assignments in updates.items():
        conn.execute(
            f"UPDATE ordermon_enrolments SET {assignments} WHERE order_id = %(id)s".encode(),
            {"id": orders[ref]},
        )
    conn.execute(
        "INSERT INTO ordermon_provider_state (provider_id, paused_until, reason) "
        "VALUES ('barakat-id', now() + interval '10 years', 'throttled')"
    )
    conn.execute(
        "INSERT INTO ordermon_runs (command, started_at, finished_at, exit_code) "
        "VALUES ('sweep', now(), now(), 0)"
    )
    figures = status.gather(conn, cfg, now)
    rows = {r["provider_id"]: r for r in figures["providers"]}
    assert rows[PROVIDER_ID]["overdue"] == {
        "claimed": 1,
        "failing": 1,
        "never_checked": 1,
        "not_checked_since": 1,
    }
    assert rows["barakat-id"]["overdue"] == {"paused": 1}
    assert rows["gone-id"]["overdue"] == {"not_configured": 1}
    reasons = [r for r in figures["attention"] if "past the deadline" in r]
    assert len(reasons) == 6, figures["attention"]
    for who, why in [
        ("of alaya", "claimed by a sweep that may have died"),
        ("of alaya", "last check failed"),
        ("of alaya", "never checked"),
        ("of alaya", "not checked since the deadline"),
        ("of barakat", "paused (throttled) until 2"),
        ("of gone-id", "not configured"),
    ]:
        assert len([r for r in reasons if who in r and why in r]) == 1, (who, why, reasons)
    config_path = tmp_path / "c.yaml"
    config_path.write_text(json.dumps(document))
    shown = run_cli("status", "--config", str(config_path))
    assert shown.returncode == 3
    assert "past the deadline" in " ".join(shown.stdout.split())


# --- #14: a database password never shows, whatever the URL's form --------------------------

PASSWORD = "Pw0rd-s3cret-771"
SPACED = "Pw0rd spaced-s3cret"
ODD = "P@ss:w0rd/%x-s3cret"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _urls(port: int) -> list[tuple[str, list[str]]]:
    encoded = urllib.parse.quote(ODD, safe="")
    return [
        (f"postgresql://shop:{PASSWORD}@127.0.0.1:{port}/shop", [PASSWORD]),
        (f"shop:{PASSWORD}@127.0.0.1:{port}/shop", [PASSWORD]),
        (f"host=127.0.0.1 port={port} user=shop password={PASSWORD}", [PASSWORD]),
        (f"host=127.0.0.1 port={port} user=shop password='{SPACED}'", SPACED.split()),
        (f"postgresql://shop:{encoded}@127.0.0.1:{port}/shop", [ODD, encoded, "w0rd"]),
        (f"postgresql://127.0.0.1:{port}/shop?user=shop&password={PASSWORD}", [PASSWORD]),
        (f"postgresql://shop:{PASSWORD}@no-such-host.invalid/shop", [PASSWORD]),
        (f"postgres://shop:{PASSWORD}@127.0.0.1:notaport/shop", [PASSWORD]),
        (f"postgresql://shop:{PASSWORD}%zz@127.0.0.1:{port}/shop", [PASSWORD]),
    ]


def test_no_form_of_database_url_leaks_its_password(
    tmp_path: Path, receiver: tuple[str, type[_Receiver]]
) -> None:
    """sweep and status, given a database URL of any form that cannot connect, print it and
    ping it redacted: the password (in any encoding) appears nowhere."""
    ping_url, pinged = receiver
    port = _closed_port()
    base_path = write_config(tmp_path / "base.yaml", f"postgresql://x@127.0.0.1:{port}/x", "")
    for n, (url, secrets) in enumerate(_urls(port)):
        document = config_document(url, "http://127.0.0.1:9", healthcheck={"ping_url": ping_url})
        config_path = tmp_path / f"c{n}.yaml"
        config_path.write_text(json.dumps(document))
        for command in ("sweep", "status"):
            result = run_cli(command, "--config", str(config_path))
            output = result.stdout + result.stderr
            assert result.returncode == 1, (url, output)
            assert "the database" in result.stderr and "Traceback" not in output
            for secret in secrets:
                assert secret not in output, (url, command, output)
        env_run = run_cli("status", "--config", str(base_path), env={"ORDERMON_DATABASE_URL": url})
        for secret in secrets:
            assert secret not in env_run.stdout + env_run.stderr, (url, env_run.stderr)
        bodies = [path + " " + body for path, body in pinged.received]
        assert any("/1 " in b and "database" in b for b in bodies), bodies
        for secret in secrets:
            assert not [b for b in bodies if secret in b], (url, bodies)
        pinged.received.clear()


def test_the_ping_sends_no_url_password_whatever_it_is_given(
    receiver: tuple[str, type[_Receiver]],
) -> None:
    """The last guard: a ping body that quotes a database URL or a password= setting has the
    password replaced before it leaves."""
    url, pinged = receiver
    body = (
        f"failed at postgresql://shop:{PASSWORD}@db.example/shop, then "
        f"shop:{PASSWORD}@db.example/shop and host=db password='{SPACED}' port=5432"
    )
    assert pings.ping(url, "1", body, 5.0)
    [(path, sent)] = pinged.received
    assert path == "/1"
    for secret in (PASSWORD, *SPACED.split()):
        assert secret not in sent, sent
    assert "shop:***@db.example" in sent and "port=5432" in sent


def test_a_connection_failure_names_the_target_without_the_password() -> None:
    """The message of a refused connection keeps the host and port (what an operator needs)
    and loses the password, in every form of URL."""
    port = _closed_port()
    for url, secrets in _urls(port):
        with pytest.raises(errors.DatabaseError) as caught:
            db.connect(url)
        message = str(caught.value)
        for secret in secrets:
            assert secret not in message, message
        assert "cannot connect to the database at" in message
        if "no-such-host" not in url:
            assert "127.0.0.1" in message, message


def test_a_cursor_from_before_the_snapshot_cursors_goes_by_seq_once(
    conn: db.Connection,
    db_url: str,
    sim: simulator.Simulator,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    """A cursor migrated from the seq cursor (or restored from another cluster) delivers the
    events after its seq, then goes by snapshot: nothing twice, nothing older."""
    url, hook = receiver
    user = add_user(conn)
    old, new, later = (add_order(conn, user, r) for r in ("old", "new", "later"))
    cfg = config.parse(config_document(db_url, sim.url, notify=_notify(url)), {})
    with conn.transaction():
        enrolment.enrol_lock(conn)
        enrolment.enrol(conn, sweep.rules(cfg.providers))
    _finish(conn, old)
    outbox.register(conn, cfg.notify.webhooks)
    conn.execute("UPDATE ordermon_webhook_cursors SET seen = NULL")  # as sql/007 leaves it
    _finish(conn, new)
    webhooks.deliver(conn, cfg, FakeClock())
    conn.execute("UPDATE ordermon_webhook_cursors SET seen = '9000000000:9000000000:'")
    _finish(conn, later)
    webhooks.deliver(conn, cfg, FakeClock())
    webhooks.deliver(conn, cfg, FakeClock())
    assert _delivered(hook.received) == sorted([str(new), str(later)])
