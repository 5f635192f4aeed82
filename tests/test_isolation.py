"""Recording and the sweep loop never break: pauses with work queued, Retry-After beyond any
sense, answers PostgreSQL refuses, a lane that fails, and orders whose own requests fail."""

import datetime as dt
import math
import uuid
from typing import Any

import psycopg
import pytest

from ordermon import config, db
from ordermon.dev import simulator
from ordermon.providers import base
from ordermon.sweep import enrolment, lanes, outcome, shop, store, sweep
from tests.conftest import (
    KOD,
    SIFRE,
    TOKEN,
    FakeClock,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    order_row,
    provider_doc,
    providers_config,
)

PAUSE = {"after_failures": 2, "cooldown": "1m", "max_cooldown": "5m"}


def _enrolments(conn: db.Connection) -> list[dict[str, Any]]:
    return list(conn.execute("SELECT * FROM ordermon_enrolments ORDER BY id"))


def _attempt_rows(conn: db.Connection, order_id: uuid.UUID) -> list[dict[str, Any]]:
    return list(
        conn.execute(
            "SELECT outcome, applied, message FROM ordermon_attempts WHERE order_id = %(id)s "
            "ORDER BY id",
            {"id": order_id},
        )
    )


def test_pause_with_work_queued_ends_the_sweep_normally(conn: db.Connection, db_url: str) -> None:
    """A provider paused while checks are queued behind the failing ones: the sweep returns
    normally, every claim is released, no attempt is spent and nothing is held for longer
    than the pause."""
    clock = FakeClock()
    with simulator.Simulator(kod=KOD, sifre=SIFRE, default=("http500",)) as sim:
        user = add_user(conn)
        for i in range(60):
            add_order(conn, user, f"r{i}", provider_id="znet-id")
        cfg = providers_config(
            db_url,
            provider_doc("znet", sim.url, pause=PAUSE),
            sweep={"concurrency": 4, "batch_size": 50, "lease": "60s"},
        )
        report = sweep.run(conn, cfg, sweep.Options(), clock=clock)
    rows = _enrolments(conn)
    assert len(rows) == 60
    assert {(r["state"], r["attempts"], r["claim_token"]) for r in rows} == {("waiting", 0, None)}
    assert all(r["next_check_at"] <= clock.now + dt.timedelta(minutes=5) for r in rows)
    assert any("paused" in problem for problem in report.problems)
    unfinished = conn.execute(
        "SELECT count(*) AS n FROM ordermon_runs WHERE finished_at IS NULL"
    ).fetchone()
    assert unfinished == {"n": 0}


@pytest.mark.parametrize("seconds", ["315360000", "99999999999999999999"])
def test_retry_after_holds_at_most_max_cooldown(
    conn: db.Connection, db_url: str, seconds: str
) -> None:
    """A 429 asking for years holds the provider (shared with other sweeps) for at most
    pause.max_cooldown, the orders wait no longer without spending attempts, then a fresh
    request goes out."""
    _held_at_most_max_cooldown(conn, db_url, f"429:{seconds}")


def test_503_retry_after_holds_at_most_max_cooldown(conn: db.Connection, db_url: str) -> None:
    """A 503 with Retry-After holds the provider exactly like a 429: shared, capped at
    pause.max_cooldown, no attempt spent. (Depends on the adapter reading a 503 with
    Retry-After as THROTTLED; the lane also holds on a Retry-After that came with a 5xx.)"""
    _held_at_most_max_cooldown(conn, db_url, "503:315360000")


def _held_at_most_max_cooldown(conn: db.Connection, db_url: str, step: str) -> None:
    clock = FakeClock()
    with simulator.Simulator(kod=KOD, sifre=SIFRE) as sim:
        user = add_user(conn)
        orders = [add_order(conn, user, f"r{i}", provider_id="znet-id") for i in range(6)]
        for i in range(6):
            sim.script(f"r{i}", step, "processing")
        cfg = providers_config(
            db_url, provider_doc("znet", sim.url, max_concurrency=1, pause=PAUSE)
        )
        report = sweep.run(conn, cfg, sweep.Options(), clock=clock)
        assert report.stopped_by is None
        assert len(sim.requests) == 1
        cap = clock.now + dt.timedelta(minutes=5)
        state = conn.execute("SELECT paused_until FROM ordermon_provider_state").fetchone()
        assert state is not None and clock.now < state["paused_until"] <= cap
        for order in orders:
            enrolment = enrolment_of(conn, order)
            assert (enrolment["attempts"], enrolment["claim_token"]) == (0, None)
            assert enrolment["next_check_at"] <= cap
        clock.advance(60)  # another sweep, a minute later, with every order due: held
        conn.execute("UPDATE ordermon_enrolments SET next_check_at = %(now)s", {"now": clock.now})
        assert sweep.run(conn, cfg, sweep.Options(), clock=clock).counts["claimed"] == 0
        assert len(sim.requests) == 1
        clock.advance(4 * 60 + 1)
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        assert len(sim.requests) >= 2


def _claims(conn: db.Connection, cfg: config.Config, clock: FakeClock) -> list[store.Claim]:
    rules = sweep.rules(cfg.providers)
    enrolment.enrol(conn, rules)
    return store.claim(conn, rules, 100, uuid.uuid4(), clock.now, clock.now + cfg.sweep.lease)


def _ctx(cfg: config.Config, clock: FakeClock) -> outcome.Context:
    """The context a sweep records with (its waits capped at the provider's longest hold)."""
    provider = cfg.providers[0]
    longest = lanes.longest_hold(provider)
    return outcome.Context("alaya", provider.policy, "refund", None, clock.now, 0.0, longest)


def test_unstorable_answer_is_that_orders_error(conn: db.Connection, db_url: str) -> None:
    """Answers PostgreSQL or its encoder refuse (a NUL, a lone surrogate) recorded in a batch
    with good ones: the good are recorded, each bad one becomes an error attempt naming the
    reason, its claim released with a next check and an attempt spent."""
    clock = FakeClock()
    user = add_user(conn)
    good = [add_order(conn, user, f"good{i}") for i in range(3)]
    nul = add_order(conn, user, "nul")
    surrogate = add_order(conn, user, "surrogate")
    cfg = providers_config(db_url, config_document(db_url, "http://unused")["providers"][0])
    claims = {c.order_id: c for c in _claims(conn, cfg, clock)}
    ctx = _ctx(cfg, clock)
    answers = {
        nul: base.Answer(base.Outcome.PROCESSING, message="AB\x00CD"),
        surrogate: base.Answer(base.Outcome.COMPLETED, pin="P\ud800", message="ok"),
    }
    order_ids = [good[0], nul, good[1], surrogate, good[2]]
    items = [
        (
            claims[o],
            base.Check(
                answers.get(o) or base.Answer(base.Outcome.COMPLETED, pin=f"PIN-{o}"),
                latency_ms=3,
                http_status=200,
            ),
            ctx,
        )
        for o in order_ids
    ]
    results = outcome.record_many(conn, items)
    assert results == ["completed", "error", "completed", "error", "completed"]
    for order in good:
        assert order_row(conn, order)["pinCode"] == f"PIN-{order}"
    for order in (nul, surrogate):
        row = enrolment_of(conn, order)
        assert (row["state"], row["claim_token"], row["attempts"]) == ("waiting", None, 1)
        assert row["next_check_at"] > clock.now
        assert order_row(conn, order)["status"] == "pending"
        [attempt] = _attempt_rows(conn, order)
        assert (attempt["outcome"], attempt["applied"]) == ("error", "error")
        assert attempt["message"].startswith("could not record this answer (")
        assert attempt["message"].isascii()


@pytest.mark.parametrize("retry_after", [math.inf, math.nan, 1e300, -5.0, 1e20])
def test_any_retry_after_is_recorded_safely(
    conn: db.Connection, db_url: str, retry_after: float
) -> None:
    """Any float as Retry-After (inf, nan, huge, negative), on an answer or on provider
    trouble, gives a finite next check within pause.max_cooldown."""
    clock = FakeClock()
    user = add_user(conn)
    orders = [add_order(conn, user, f"r{i}") for i in range(3)]
    cfg = providers_config(db_url, config_document(db_url, "http://unused")["providers"][0])
    claims = {c.order_id: c for c in _claims(conn, cfg, clock)}
    ctx = _ctx(cfg, clock)
    checks = [
        base.Check(base.Answer(base.Outcome.PROCESSING), 1, 200, retry_after=retry_after),
        base.Check(
            base.error("slow down"), 1, 429, retry_after=retry_after, trouble=base.Trouble.THROTTLED
        ),
        base.Check(
            base.error("not sent"),
            0,
            retry_after=retry_after,
            trouble=base.Trouble.THROTTLED,
            sent=False,
        ),
    ]
    items = [(claims[o], c, ctx) for o, c in zip(orders, checks, strict=True)]
    assert outcome.record_many(conn, items) == ["processing", "error", "error"]
    cap = clock.now + cfg.providers[0].pause.max_cooldown
    for order in orders:
        row = enrolment_of(conn, order)
        assert row["claim_token"] is None and clock.now <= row["next_check_at"] <= cap


def test_lost_database_fails_the_recording(conn: db.Connection, db_url: str) -> None:
    """A connection the server has dropped is the one failure recording does not absorb."""
    clock = FakeClock()
    order = add_order(conn, add_user(conn), "r1")
    cfg = providers_config(db_url, config_document(db_url, "http://unused")["providers"][0])
    [claim] = _claims(conn, cfg, clock)
    with db.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%(pid)s)", {"pid": conn.info.backend_pid})
    check = base.Check(base.Answer(base.Outcome.COMPLETED, pin="P"), 1, 200)
    with pytest.raises(psycopg.OperationalError):
        outcome.record_many(conn, [(claim, check, _ctx(cfg, clock))])
    with db.connect(db_url, autocommit=True) as other:
        assert enrolment_of(other, order)["claim_token"] == claim.token  # left to its lease


def _two_lanes(conn: db.Connection, db_url: str, sim_url: str) -> config.Config:
    user = add_user(conn)
    for i in range(4):
        add_order(conn, user, f"z{i}", provider_id="znet-id")
        add_order(conn, user, str(7000 + i), provider_id="barakat-id")
    return providers_config(db_url, provider_doc("znet", sim_url), provider_doc("barakat", sim_url))


def _settled(conn: db.Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT provider_id, state, count(*) AS n FROM ordermon_enrolments "
        "WHERE claim_token IS NULL GROUP BY 1, 2"
    )
    return {(r["provider_id"], r["state"]): r["n"] for r in rows}


def test_failing_lane_leaves_the_other_lanes_working(
    conn: db.Connection, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane whose work raises (the worker itself, not just the adapter): the other provider's
    orders are settled, the failing lane's claims are released, and a problem line names it."""
    real_send = lanes.Lane._send

    def broken(self: lanes.Lane, *args: Any, **kwargs: Any) -> lanes.Result:
        if self.provider.kind == "znet":
            raise RuntimeError("a bug in the lane")
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(lanes.Lane, "_send", broken)
    with simulator.Simulator(kod=KOD, sifre=SIFRE, token=TOKEN, default=("completed:P",)) as sim:
        cfg = _two_lanes(conn, db_url, sim.url)
        report = sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
    assert _settled(conn) == {("barakat-id", "done"): 4, ("znet-id", "waiting"): 4}
    assert report.counts["completed"] == 4
    assert any("znet" in problem and "RuntimeError" in problem for problem in report.problems)


def test_failing_adapter_is_a_problem_line(
    conn: db.Connection, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An adapter that raises is that lane's error attempts and a problem line naming the
    provider; the other lane is settled."""
    from ordermon.providers import znet

    def broken(*args: Any, **kwargs: Any) -> dict[str, base.Answer]:
        raise KeyError("a bug in the parser")

    monkeypatch.setattr(znet.Znet, "parse", broken)
    with simulator.Simulator(kod=KOD, sifre=SIFRE, token=TOKEN, default=("completed:P",)) as sim:
        cfg = _two_lanes(conn, db_url, sim.url)
        report = sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
    assert _settled(conn) == {("barakat-id", "done"): 4, ("znet-id", "waiting"): 4}
    assert any("znet" in problem and "KeyError" in problem for problem in report.problems)


def test_recording_bug_in_one_lane_leaves_the_others_recorded(
    conn: db.Connection, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording that raises for one provider's answers: the other provider's answers are
    recorded, the failing ones become error attempts with released claims, the sweep returns
    and a problem line names the provider."""
    real_write = shop.write_orders

    def broken(conn: db.Connection, writes: list[shop.OrderWrite]) -> set[uuid.UUID]:
        if any(w.claim.provider_id == "znet-id" for w in writes):
            raise TypeError("a bug in recording")
        return real_write(conn, writes)

    monkeypatch.setattr(shop, "write_orders", broken)
    with simulator.Simulator(kod=KOD, sifre=SIFRE, token=TOKEN, default=("completed:P",)) as sim:
        cfg = _two_lanes(conn, db_url, sim.url)
        report = sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
    assert _settled(conn) == {("barakat-id", "done"): 4, ("znet-id", "waiting"): 4}
    messages = {
        r["message"]
        for r in conn.execute("SELECT message FROM ordermon_attempts WHERE provider_id = 'znet-id'")
    }
    assert messages == {"could not record this answer (TypeError): will retry"}
    assert any("znet" in problem and "TypeError" in problem for problem in report.problems)


def test_order_whose_own_requests_fail_spends_attempts(conn: db.Connection, db_url: str) -> None:
    """An order whose every request fails (HTTP 500) while the provider answers the others
    spends attempts and backs off, is expired once checked past its deadline, and the provider
    is never paused."""
    clock = FakeClock()
    with simulator.Simulator(kod=KOD, sifre=SIFRE) as sim:
        user = add_user(conn)
        for i in range(4):
            add_order(conn, user, f"ok{i}", provider_id="znet-id", sent_at=clock.now)
        bad = add_order(conn, user, "bad", provider_id="znet-id", sent_at=clock.now)
        late = add_order(
            conn, user, "late", provider_id="znet-id", sent_at=clock.now - dt.timedelta(hours=2)
        )
        sim.script("bad", "http500")
        sim.script("late", "http500")
        schedule = {
            "first_check_after": "0s",
            "base_delay": "10s",
            "factor": 2,
            "max_delay": "10m",
            "jitter": 0,
            "give_up_after": "1h",
        }
        cfg = providers_config(db_url, provider_doc("znet", sim.url), schedule=schedule)
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        assert enrolment_of(conn, late)["state"] == "expired"
        assert sim.count("late") == 1
        pauses = [10, 20, 40]
        for attempts, pause in enumerate(pauses, start=1):
            row = enrolment_of(conn, bad)
            assert (row["state"], row["attempts"]) == ("waiting", attempts)
            assert row["next_check_at"] == clock.now + dt.timedelta(seconds=pause)
            clock.advance(pause)
            sweep.run(conn, cfg, sweep.Options(), clock=clock)
        assert sim.count("bad") == 4
        assert enrolment_of(conn, bad)["attempts"] == 4
    state = conn.execute("SELECT pauses, paused_until FROM ordermon_provider_state").fetchone()
    assert state is None or (state["pauses"], state["paused_until"]) == (0, None)
