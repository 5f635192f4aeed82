"""The sweep: which orders it watches, the backlog, re-sends, limits and leases."""

import dataclasses
import datetime as dt
import uuid

from ordermon import config, db, providers
from ordermon.dev import simulator
from ordermon.sweep import enrolment, outcome, store, sweep
from tests.conftest import FakeClock, add_order, add_user, enrolment_of, make_config, order_row


def _sweep(
    conn: db.Connection, cfg: config.Config, clock: FakeClock, **options: object
) -> sweep.Report:
    return sweep.run(conn, cfg, sweep.Options(**options), clock=clock)  # type: ignore[arg-type]


def _enrolled(conn: db.Connection) -> set[uuid.UUID]:
    return {r["order_id"] for r in conn.execute("SELECT order_id FROM ordermon_enrolments")}


def test_which_orders_are_monitored(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """Pending, sent/queued/processing, a configured provider, sentAt and a reference."""
    user = add_user(conn)
    watched = {
        add_order(conn, user, f"r{s}", external_status=s) for s in ("sent", "queued", "processing")
    }
    add_order(conn, user, "r-not-sent", external_status="not_sent")
    add_order(conn, user, "r-done", external_status="done")
    add_order(conn, user, "r-approved", status="approved")
    add_order(conn, user, "r-other", provider_id="someone-else")
    add_order(conn, user, None)  # znet needs provider_referans
    no_sent_at = add_order(conn, user, "r-nosent")
    conn.execute('UPDATE product_orders SET "sentAt" = NULL WHERE id = %(id)s', {"id": no_sent_at})
    report = _sweep(conn, make_config(db_url, sim.url), FakeClock())
    assert report.counts["enrolled"] == 3
    assert _enrolled(conn) == watched
    assert set(sim.counts()) == {"rsent", "rqueued", "rprocessing"}


def test_backlog_on_installation_day(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """Orders sent days before the deadline are each checked once, then expire if unresolved."""
    clock = FakeClock()
    user = add_user(conn)
    old = clock.now - dt.timedelta(days=3)
    stuck = [add_order(conn, user, f"stuck{i}", sent_at=old) for i in range(5)]
    done = add_order(conn, user, "done-meanwhile", sent_at=old)
    sim.script("done-meanwhile", "completed:LATE-PIN")
    cfg = make_config(db_url, sim.url, schedule={"give_up_after": "24h", "first_check_after": "1m"})
    report = _sweep(conn, cfg, clock)
    assert report.counts["expired"] == 5 and report.counts["completed"] == 1
    assert all(sim.count(f"stuck{i}") == 1 for i in range(5))
    assert [enrolment_of(conn, o)["state"] for o in stuck] == ["expired"] * 5
    assert order_row(conn, done)["pinCode"] == "LATE-PIN"
    clock.advance(3600)
    _sweep(conn, cfg, clock)
    assert len(sim.requests) == 6  # nothing is asked twice


def test_resent_order_is_settled_by_the_new_dispatch(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """A re-send (new reference and sentAt) retires the old enrolment and starts a fresh one."""
    clock = FakeClock()
    order = add_order(conn, add_user(conn), "old-ref")
    sim.script("old-ref", "processing", "completed:OLD-PIN")
    sim.script("new-ref", "completed:NEW-PIN")
    cfg = make_config(db_url, sim.url)
    _sweep(conn, cfg, clock)
    first = enrolment_of(conn, order)
    conn.execute(
        """UPDATE product_orders SET provider_referans = 'new-ref', "externalStatus" = 'sent',
               "sentAt" = %(now)s WHERE id = %(id)s""",
        {"id": order, "now": clock.now},
    )
    clock.advance(120)
    report = _sweep(conn, cfg, clock)
    assert report.counts["enrolled"] == 1 and report.counts["completed"] == 1
    states = {
        r["reference"]: r["state"]
        for r in conn.execute("SELECT reference, state, attempts FROM ordermon_enrolments")
    }
    assert states == {"old-ref": "superseded", "new-ref": "done"}
    assert enrolment_of(conn, order)["id"] != first["id"]
    assert order_row(conn, order)["pinCode"] == "NEW-PIN"
    assert sim.count("old-ref") == 1


def test_resent_while_in_flight_changes_nothing(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """The old dispatch's answer arriving after a re-send is recorded as superseded."""
    clock = FakeClock()
    order = add_order(conn, add_user(conn), "old-ref")
    cfg = make_config(db_url, sim.url)
    provider_rules = sweep.rules(cfg.providers)
    enrolment.enrol(conn, provider_rules)
    [claim] = store.claim(
        conn, provider_rules, 10, uuid.uuid4(), clock.now, clock.now + dt.timedelta(minutes=5)
    )
    conn.execute(
        "UPDATE product_orders SET provider_referans = 'new-ref' WHERE id = %(id)s", {"id": order}
    )
    sim.script("old-ref", "completed:OLD-PIN")
    check = providers.build(cfg.providers[0]).check(["old-ref"])["old-ref"]
    ctx = outcome.Context("alaya", cfg.policy, "refund", None, clock.now, 0.0)
    assert outcome.record(conn, claim, check, ctx) == outcome.SUPERSEDED
    after = order_row(conn, order)
    assert (after["status"], after["pinCode"]) == ("pending", None)


def test_lease_keeps_others_off_then_returns_the_order(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """A claim whose sweep died is left alone until its lease ends, then checked again; the
    dead sweep's late answer changes nothing."""
    clock = FakeClock()
    order = add_order(conn, add_user(conn), "r1")
    cfg = make_config(db_url, sim.url)
    provider_rules = sweep.rules(cfg.providers)
    enrolment.enrol(conn, provider_rules)
    [dead] = store.claim(
        conn, provider_rules, 10, uuid.uuid4(), clock.now, clock.now + cfg.sweep.lease
    )
    sim.script("r1", "completed:PIN-1")
    clock.advance(30)
    assert _sweep(conn, cfg, clock).counts["claimed"] == 0
    clock.advance(31)
    assert _sweep(conn, cfg, clock).counts["completed"] == 1
    assert enrolment_of(conn, order)["attempts"] == 1  # the dead sweep's claim spent nothing
    late = providers.build(cfg.providers[0]).check(["r1"])["r1"]
    ctx = outcome.Context("alaya", cfg.policy, "refund", None, clock.now, 0.0)
    assert outcome.record(conn, dead, late, ctx) == outcome.SUPERSEDED
    assert order_row(conn, order)["status"] == "approved"


def test_limit_and_provider_options(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """--limit caps the checks of a run; --provider restricts it to the named providers."""
    clock = FakeClock()
    user = add_user(conn)
    for i in range(7):
        add_order(conn, user, f"a{i}")
    cfg = make_config(db_url, sim.url)
    second = dataclasses.replace(cfg.providers[0], id="p2", name="second")
    cfg = dataclasses.replace(cfg, providers=(*cfg.providers, second))
    for i in range(3):
        add_order(conn, user, f"b{i}", provider_id="p2")
    report = _sweep(conn, cfg, clock, limit=4, provider_names=("alaya",))
    assert report.counts["claimed"] == 4
    assert all(ref.startswith("a") for ref in sim.counts())
    report = _sweep(conn, cfg, clock, provider_names=("second",))
    assert report.counts["claimed"] == 3
    assert sum(1 for ref in sim.counts() if ref.startswith("b")) == 3


def test_soft_time_limit_stops_claiming(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """Past soft_time_limit no new batch is claimed; what was claimed is finished."""
    user = add_user(conn)
    for i in range(30):
        add_order(conn, user, f"r{i}")
    sim.latency = 0.2
    document = {
        "batch_size": 5,
        "concurrency": 5,
        "lease": "60s",
        "soft_time_limit": "100ms",
        "time_limit": "30s",
    }
    cfg = make_config(db_url, sim.url, sweep=document)
    report = _sweep(conn, cfg, FakeClock())
    assert report.stopped_by == "soft_time_limit"
    assert 5 <= report.counts["claimed"] < 30
    assert report.counts["processing"] == report.counts["claimed"]
    leftover = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE claim_token IS NOT NULL"
    ).fetchone()
    assert leftover == {"n": 0}


def test_time_limit_abandons_the_run(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """At time_limit the run stops waiting; its open claims come back with the lease."""
    add_order(conn, add_user(conn), "slow")
    sim.script("slow", "hang:3")
    document = {"lease": "20s", "soft_time_limit": "500ms", "time_limit": "1s"}
    providers_doc = make_config(db_url, sim.url)
    del providers_doc
    cfg = make_config(db_url, sim.url, sweep=document)
    report = _sweep(conn, cfg, FakeClock())
    assert report.stopped_by == "time_limit"
    assert report.seconds < 2.9
    assert report.counts["claimed"] == 1 and report.counts["processing"] == 0
    run = conn.execute("SELECT stopped_by, finished_at FROM ordermon_runs").fetchone()
    assert run is not None and run["stopped_by"] == "time_limit" and run["finished_at"]


def test_run_rows_record_the_counts(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """Each sweep leaves a row with its counts."""
    user = add_user(conn)
    sim.script("c", "completed:P")
    sim.script("f", "failed")
    add_order(conn, user, "c")
    add_order(conn, user, "f")
    add_order(conn, user, "p")
    _sweep(conn, make_config(db_url, sim.url), FakeClock())
    run = conn.execute("SELECT * FROM ordermon_runs").fetchone()
    assert run is not None
    assert (
        run["enrolled"],
        run["claimed"],
        run["completed"],
        run["failed"],
        run["processing"],
        run["exit_code"],
    ) == (3, 3, 1, 1, 1, 0)
