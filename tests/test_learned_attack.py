"""Findings of the hostile review of the learned schedule (issue 13): a stored summary, a
history or a config that ordermon did not expect, as real processes meet them."""

import datetime as dt
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE
from typing import Any

import psycopg

from ordermon import config, db
from ordermon.config import providers as provider_config
from ordermon.dev import simulator
from ordermon.sweep import estimate, models, placement, schedule, sweep
from tests.conftest import (
    PROVIDER_ID,
    FakeClock,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    run_cli,
)
from tests.test_learned_sweep import finished_history

OTHER_ID = "3b6d4c1e-0000-4000-8000-000000000002"
LEARNED = {"mode": "learned", "min_samples": 100, "min_delay": "1s", "explore": 0}


def _two_learned(tmp_path: Path, db_url: str, sim_url: str) -> Path:
    """alaya and its twin beta, both learned, at the same simulator."""
    document = config_document(db_url, sim_url)
    document["providers"][0]["schedule"] = LEARNED
    twin = dict(document["providers"][0], id=OTHER_ID, name="beta")
    document["providers"].append(twin)
    path = tmp_path / "ordermon.yaml"
    path.write_text(json.dumps(document))
    return path


def _clean(result: Any) -> str:
    said: str = result.stdout + result.stderr
    assert "Traceback" not in said, said
    return said


def test_a_summary_dated_infinity_is_that_providers_backoff_never_a_traceback(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """PostgreSQL stores computed_at 'infinity' (or a year past 9999), which psycopg cannot
    read: the sweep that enrols, the sweep that checks, `providers` and `check` must each
    treat beta's row as unreadable (backoff, a warning) and leave alaya alone."""
    path = _two_learned(tmp_path, db_url, sim.url)
    conn.execute(
        """INSERT INTO ordermon_schedule_models (provider_id, computed_at, samples, covered,
               quantiles) VALUES (%(p)s, 'infinity', 500, 1, '{0, 10, 20}'),
                                 (%(q)s, '20000-01-01', 500, 1, '{0, 10, 20}')""",
        {"p": OTHER_ID, "q": "an-unconfigured-provider"},
    )
    user = add_user(conn)
    ours = add_order(conn, user, "a-1", sent_at=dt.datetime.now(dt.UTC), provider_id=PROVIDER_ID)
    theirs = add_order(conn, user, "b-1", sent_at=dt.datetime.now(dt.UTC), provider_id=OTHER_ID)
    swept = run_cli("sweep", "--config", str(path))
    said = _clean(swept)
    assert swept.returncode == 0, said
    assert enrolment_of(conn, ours)["attempts"] == 1
    assert enrolment_of(conn, theirs)["attempts"] == 1
    assert "beta" in said and "not usable" in said
    healed = conn.execute(
        "SELECT isfinite(computed_at) AS ok FROM ordermon_schedule_models WHERE provider_id = %s",
        (OTHER_ID,),
    ).fetchone()
    assert healed is not None and healed["ok"]  # the refresh rewrote it
    conn.execute("UPDATE ordermon_schedule_models SET computed_at = 'infinity'")
    conn.execute("UPDATE ordermon_enrolments SET next_check_at = now() - interval '1s'")
    again = run_cli("sweep", "--config", str(path))  # now the orders are due, not new
    assert again.returncode == 0, _clean(again)
    assert enrolment_of(conn, theirs)["attempts"] == 2
    conn.execute("UPDATE ordermon_schedule_models SET computed_at = 'infinity'")
    listed = run_cli("providers", "--json", "--config", str(path))
    assert listed.returncode == 0, _clean(listed)
    rows = {row["name"]: row["schedule"] for row in json.loads(listed.stdout)}
    assert rows["beta"]["in_use"] == "backoff" and "unreadable" in rows["beta"]["why"]
    checked = run_cli("check", str(theirs), "--config", str(path))
    assert checked.returncode == 0, _clean(checked)
    _clean(checked)


def _s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


def _config(db_url: str, sim_url: str, **schedule: Any) -> config.Config:
    document = config_document(db_url, sim_url)
    document["providers"][0]["schedule"] = schedule
    return config.parse(document, {})


def test_one_order_sent_long_ago_does_not_poison_the_learned_schedule(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """A dispatch whose "sentAt" is 500 days old (a backlog, a migrated row) answered now:
    its interval is past what a summary may hold, so the refresh must leave it out rather than
    write a summary its own reader refuses (backoff and a warning every sweep for the whole
    window, "until it is recomputed", which would write the same again)."""
    clock = FakeClock()
    finished_history(conn, clock.now - _s(3600), [(20.0, 30.0)] * 150)
    # checked processing on enrolment, delivered at its next check a minute later
    finished_history(conn, clock.now - _s(500 * 86400), [(500 * 86400 - 120.0, 500 * 86400 - 60.0)])
    cfg = _config(db_url, sim.url, **LEARNED, max_delay="1m")
    order = add_order(conn, add_user(conn), "now", sent_at=clock.now)
    sweep.run(conn, cfg, sweep.Options(), clock=clock)
    row = enrolment_of(conn, order)
    assert row["next_check_why"].startswith("learned plan (learned from 150 orders"), row


def test_a_learned_first_check_is_never_past_the_deadline(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """History says answers come 20 to 30 s after "sentAt", so the plan's first check is
    there; with give_up_after 10s the first check must be the deadline's last chance, as
    every later learned check is (schedule.decide), not a check after the order's deadline."""
    clock = FakeClock()
    finished_history(conn, clock.now - _s(3600), [(20.0, 30.0)] * 150)
    cfg = _config(db_url, sim.url, **LEARNED, max_delay="1m", give_up_after="10s")
    user = add_user(conn)
    add_order(conn, user, "warm-up", sent_at=clock.now)
    sweep.run(conn, cfg, sweep.Options(), clock=clock)  # refreshes the summary
    order = add_order(conn, user, "new", sent_at=clock.now)
    sweep.run(conn, cfg, sweep.Options(), clock=clock)
    row = enrolment_of(conn, order)
    assert row["next_check_at"] <= row["deadline"], row
    clock.now = row["next_check_at"]
    sweep.run(conn, cfg, sweep.Options(), clock=clock)
    row = enrolment_of(conn, order)
    assert (row["state"], row["attempts"]) == ("expired", 1)
    assert row["last_checked_at"] == row["deadline"]  # checked at the deadline, then expired


def test_a_requeued_order_does_not_keep_its_old_reason(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """After an expiry and a requeue, `show` must not say the next check (now) is "the
    deadline: the last chance" or a backoff after check 4: it was requeued."""
    document = config_document(db_url, sim.url)
    document["providers"][0]["schedule"] = LEARNED | {"give_up_after": "5s"}
    path = tmp_path / "ordermon.yaml"
    path.write_text(json.dumps(document))
    cfg = config.parse(document, {})
    clock = FakeClock(dt.datetime.now(dt.UTC) - _s(60))
    order = add_order(conn, add_user(conn), "slow", sent_at=clock.now)
    for _ in range(6):
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        clock.now = max(clock.now, enrolment_of(conn, order)["next_check_at"])
    assert enrolment_of(conn, order)["state"] == "expired"
    requeued = run_cli("requeue", str(order), "--config", str(path))
    assert requeued.returncode == 0, _clean(requeued)
    why = enrolment_of(conn, order)["next_check_why"]
    assert why is None or "requeue" in why, why
    shown = run_cli("show", str(order), "--config", str(path))
    assert shown.returncode == 0, _clean(shown)
    assert "last chance" not in shown.stdout and "after check" not in shown.stdout, shown.stdout


# Finished orders of a provider whose answers come log-normally (median 90 s), each with a
# processing check somewhere before its answer and its completed check 5 to 65 s after it.
_BULK = """
WITH o AS (
  SELECT gen_random_uuid() AS order_id, now() - interval '2 hours' - g * interval '1 second'
             AS sent,
         exp(ln(90) + 1.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS t
  FROM generate_series(1, %(n)s) g
), e AS (
  INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state, attempts,
      next_check_at, deadline, finished_at)
  SELECT order_id, %(provider)s, 'r', sent, 'done', 2, sent, sent + interval '1 day',
         sent + make_interval(secs => t + 5 + random() * 60)
  FROM o RETURNING id, order_id, sent_at, finished_at
)
INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at, outcome, counted)
SELECT id, order_id, %(provider)s, sent_at + (finished_at - sent_at) * random() * 0.8,
       'processing', true FROM e
UNION ALL
SELECT id, order_id, %(provider)s, finished_at, 'completed', true FROM e
"""


def test_a_refresh_at_the_largest_window_orders_is_not_a_stall(conn: db.Connection) -> None:
    """window_orders may be 100,000: the refresh that a sweep with work runs first (every
    refresh_every) must not hold that sweep for the time of a fit over all of them (17 s
    measured on this machine), yet learn the same distribution."""
    conn.execute(_BULK, {"n": 100_000, "provider": PROVIDER_ID})
    conn.execute("ANALYZE")
    policy = schedule.Policy(mode="learned", window_orders=100_000)
    provider = provider_config.ProviderConfig(
        id=PROVIDER_ID,
        name="alaya",
        kind="znet",
        base_url="http://x",
        timeout=5.0,
        max_reply_bytes=65536,
        policy=policy,
    )
    started = time.monotonic()
    assert models.refresh(conn, provider, dt.datetime.now(dt.UTC))
    took = time.monotonic() - started
    row = conn.execute("SELECT samples, p50, p90 FROM ordermon_schedule_models").fetchone()
    assert row is not None and row["samples"] == 100_000
    assert 40 < row["p50"] < 120 and 200 < row["p90"] < 700, row
    assert took < 8.0, f"the refresh took {took:.1f}s"


def _learned_config(tmp_path: Path, db_url: str, sim_url: str, **schedule_keys: Any) -> Path:
    document = config_document(db_url, sim_url)
    document["providers"][0]["schedule"] = LEARNED | schedule_keys
    path = tmp_path / "ordermon.yaml"
    path.write_text(json.dumps(document))
    return path


def _sweep_process(path: Path) -> "subprocess.Popen[str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}
    command = [sys.executable, "-m", "ordermon", "sweep", "--config", str(path)]
    return subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=env)


def _refresh_lock_holders(conn: db.Connection) -> int:
    row = conn.execute(
        """SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND classid = 7170013 AND objsubid = 2"""
    ).fetchone()
    return int(row["n"]) if row else 0


def test_concurrent_sweeps_refresh_once_and_all_finish(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Four sweep processes started together, each with work, on a history whose refresh
    takes a while: none waits for another's refresh, none fails, and the summary written is
    one ordermon reads back as learned."""
    conn.execute(_BULK, {"n": 20_000, "provider": PROVIDER_ID})
    path = _learned_config(tmp_path, db_url, sim.url, window_orders=20_000)
    user = add_user(conn)
    for index in range(40):
        add_order(conn, user, f"o-{index}", sent_at=dt.datetime.now(dt.UTC))
    procs = [_sweep_process(path) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert not any("Traceback" in out + err for out, err in outputs), outputs
    rows = conn.execute("SELECT samples, computed_at FROM ordermon_schedule_models").fetchall()
    assert len(rows) == 1 and rows[0]["samples"] == 20_000
    written = conn.execute(
        """SELECT n_tup_ins + n_tup_upd AS n FROM pg_stat_user_tables
           WHERE relname = 'ordermon_schedule_models'"""
    ).fetchone()
    assert written == {"n": 1}  # one refresh for the four (the processes' stats are flushed)
    waiting = conn.execute(
        "SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting' AND attempts >= 1"
        " AND reference LIKE 'o-%%'"
    ).fetchone()
    assert waiting == {"n": 40}
    assert _refresh_lock_holders(conn) == 0


def test_a_sweep_killed_mid_refresh_leaves_nothing_held(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """SIGKILL while the sweep holds the refresh's advisory lock: no half-written summary,
    the lock goes with the session, and the next sweep refreshes and works."""
    conn.execute(_BULK, {"n": 100_000, "provider": PROVIDER_ID})
    path = _learned_config(tmp_path, db_url, sim.url, window_orders=100_000)
    order = add_order(conn, add_user(conn), "due", sent_at=dt.datetime.now(dt.UTC))
    victim = _sweep_process(path)
    deadline = time.monotonic() + 60
    while _refresh_lock_holders(conn) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _refresh_lock_holders(conn) == 1, "the sweep never reached its refresh"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    assert conn.execute("SELECT count(*) AS n FROM ordermon_schedule_models").fetchone() == {"n": 0}
    deadline = time.monotonic() + 30
    while _refresh_lock_holders(conn) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server's backend notices its client is gone
    assert _refresh_lock_holders(conn) == 0
    conn.execute("UPDATE ordermon_enrolments SET next_check_at = now() - interval '1s'")
    after = _sweep_process(path)
    out, err = after.communicate(timeout=120)
    assert after.returncode == 0 and "Traceback" not in out + err, err
    stored = conn.execute("SELECT samples FROM ordermon_schedule_models").fetchone()
    assert stored == {"samples": 100_000}
    assert enrolment_of(conn, order)["attempts"] >= 1


def test_the_refresh_lock_held_elsewhere_blocks_no_sweep(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Someone holds the refresh's advisory lock (another tool, a stuck session): sweeps do
    not wait for it, they check by what is stored (here nothing: backoff)."""
    finished_history(conn, dt.datetime.now(dt.UTC) - _s(3600), [(20.0, 30.0)] * 150)
    path = _learned_config(tmp_path, db_url, sim.url)
    order = add_order(conn, add_user(conn), "due", sent_at=dt.datetime.now(dt.UTC))
    with db.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(7170013, hashtext(%(p)s))", {"p": PROVIDER_ID})
        started = time.monotonic()
        result = run_cli("sweep", "--config", str(path), timeout=60)
        assert result.returncode == 0, _clean(result)
        assert time.monotonic() - started < 30
    assert conn.execute("SELECT count(*) AS n FROM ordermon_schedule_models").fetchone() == {"n": 0}
    row = enrolment_of(conn, order)
    assert row["attempts"] == 1 and row["next_check_why"].startswith("backoff: nothing learned")


def _course(conn: db.Connection, cfg: config.Config, reference: str) -> list[tuple[Any, ...]]:
    """An order processing forever, swept at each of its next checks until it expires:
    (seconds from "sentAt" to its next check, state, attempts) after each sweep, with the
    same random draws (jitter, explore) in every run."""
    clock = FakeClock(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    order = add_order(conn, add_user(conn), reference, sent_at=clock.now)
    course = []
    for _ in range(12):
        random.seed(13)
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        row = enrolment_of(conn, order)
        course.append(((row["next_check_at"] - row["sent_at"]).total_seconds(), row["state"]))
        course.append((row["attempts"], row["last_checked_at"] == row["deadline"]))
        if row["state"] != "waiting":
            break
        clock.now = row["next_check_at"]
    return course


def test_no_history_is_backoff_exactly_with_jitter_deadline_and_max_attempts(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """With jitter, a deadline that falls between checks and max_attempts, a learned
    provider with nothing learned, or fewer than min_samples orders, is checked at the same
    instants as under backoff, checked at the deadline, and expires at the same check."""
    keys = {"jitter": 0.1, "give_up_after": "20s", "first_check_after": "2s"}
    runs = {}
    for name, schedule_keys in (
        ("backoff", keys),
        ("learned, nothing", keys | {"mode": "learned"}),
        ("backoff, max_attempts", keys | {"max_attempts": 4}),
        ("learned, max_attempts", keys | {"mode": "learned", "max_attempts": 4}),
    ):
        runs[name] = _course(conn, _config(db_url, sim.url, **schedule_keys), f"r-{name}")
    finished_history(conn, dt.datetime(2026, 11, 30, 23, tzinfo=dt.UTC), [(20.0, 30.0)] * 99)
    cfg = _config(db_url, sim.url, **keys, mode="learned", window="30d")
    runs["learned, 99 orders"] = _course(conn, cfg, "r-99")
    assert runs["backoff"][-2][1] == "expired" and runs["backoff"][-1][1], runs["backoff"]
    assert runs["learned, nothing"] == runs["backoff"]
    assert runs["learned, 99 orders"] == runs["backoff"]
    assert runs["learned, max_attempts"] == runs["backoff, max_attempts"]
    assert runs["backoff, max_attempts"][-1][0] == 4


def test_switching_mode_between_sweeps_and_a_zero_request_cost(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """learned, backoff, learned again on the same waiting order: each sweep places the next
    check by the mode it is given, the summary kept across; request_cost 0s and min_delay 0s
    (the loosest values allowed) still place a check, none in the past."""
    clock = FakeClock()
    finished_history(conn, clock.now - _s(3600), [(float(i), i + 10.0) for i in range(0, 600, 4)])
    learned = _config(db_url, sim.url, **LEARNED, max_delay="20s")
    backoff = _config(db_url, sim.url, max_delay="20s")
    loosest = _config(
        db_url, sim.url, **LEARNED | {"min_delay": "0s", "request_cost": "0s"}, max_delay="20s"
    )
    order = add_order(conn, add_user(conn), "switch", sent_at=clock.now)
    whys = []
    for cfg in (learned, backoff, learned, loosest, backoff):
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        row = enrolment_of(conn, order)
        assert row["next_check_at"] >= clock.now, row
        whys.append(row["next_check_why"].split(" (")[0])
        clock.now = row["next_check_at"]
    assert whys == [
        "learned plan",
        "backoff after check 2",
        "learned plan",
        "learned plan",
        "backoff after check 5",
    ], whys


def test_an_idle_learned_sweep_makes_the_same_statements_as_backoff(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, monkeypatch: Any
) -> None:
    """Counted at psycopg: an idle sweep (nothing new, nothing due) of a learned provider
    with a history and a stored summary sends exactly the statements of a backoff one."""
    clock = FakeClock()
    finished_history(conn, clock.now - _s(3600), [(20.0, 30.0)] * 150)
    sent: list[str] = []
    original = psycopg.Cursor.execute

    def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query)[:60])
        return original(self, query, *args, **kwargs)

    counts = {}
    for name, keys in (("backoff", {}), ("learned", LEARNED)):
        cfg = _config(db_url, sim.url, **keys)
        add_order(conn, add_user(conn), f"idle-{name}", sent_at=clock.now)
        sweep.run(conn, cfg, sweep.Options(), clock=clock)  # enrols, checks: later is idle
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        monkeypatch.setattr(psycopg.Cursor, "execute", counting)
        sent.clear()
        report = sweep.run(conn, cfg, sweep.Options(), clock=clock)
        monkeypatch.setattr(psycopg.Cursor, "execute", original)
        assert report.counts["claimed"] == 0
        counts[name] = list(sent)
    assert conn.execute("SELECT count(*) AS n FROM ordermon_schedule_models").fetchone() == {"n": 1}
    assert counts["learned"] == counts["backoff"] and 5 <= len(counts["backoff"]) <= 10, counts


def test_min_delay_equal_to_max_delay_still_plans(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """min_delay 10m and max_delay 10m (allowed: "every learned pause is ten minutes"), on a
    provider answering over the first hour: the plan must still have a next check after
    every point (it had none where no grid step is exactly 10 minutes, and the first check
    of a new order then raised IndexError in enrolment: a traceback for every provider)."""
    finished_history(
        conn, dt.datetime.now(dt.UTC) - _s(7200), [(i * 20.0, i * 20.0 + 10) for i in range(150)]
    )
    path = _learned_config(tmp_path, db_url, sim.url, min_delay="10m", max_delay="10m")
    user = add_user(conn)
    add_order(conn, user, "first", sent_at=dt.datetime.now(dt.UTC))
    assert run_cli("sweep", "--config", str(path)).returncode == 0  # refreshes the summary
    second = add_order(conn, user, "second", sent_at=dt.datetime.now(dt.UTC))
    result = run_cli("sweep", "--config", str(path))
    assert result.returncode == 0, _clean(result)
    row = enrolment_of(conn, second)
    assert row["next_check_why"] == "the first check: learned from 150 orders"
    assert (row["next_check_at"] - row["sent_at"]).total_seconds() == 600


def test_every_plan_has_a_next_check_after_each_point() -> None:
    """Over summaries from a second to 400 days and every min_delay <= max_delay, the plan
    names a next check after each of its points but the last, and the first check."""
    rng = random.Random(5)
    for _ in range(300):
        top = math.exp(rng.uniform(0, math.log(400 * 86400)))
        values = sorted([0.0] + [rng.uniform(0, top) for _ in range(100)])
        summary = estimate.Estimate(1000, 1.0, tuple(values))
        low = rng.choice([0.0, 1.0, 5.0, 60.0, 600.0])
        high = max(low, rng.choice([low, low * 1.5, 600.0, 3600.0]))
        plan = placement.plan(summary, rng.choice([0.0, 20.0, 1e4]), low, high)
        assert all(after < len(plan.grid) for after in plan.following[:-1]), (top, low, high)
        assert 0 < plan.first_after() <= plan.grid[-1]


_PEAK = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_a_huge_stored_summary_is_not_read_whole(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """A summary row holding 5,000,000 quantiles (no summary has more than 101): refused,
    and not loaded whole by every sweep with work or `providers` first (at 20,000,000 that
    was 8 s and 1.1 GB, for every sweep until the next refresh)."""
    path = _two_learned(tmp_path, db_url, sim.url)
    conn.execute(
        """INSERT INTO ordermon_schedule_models (provider_id, computed_at, samples, covered,
               quantiles)
           SELECT %(p)s, now(), 500, 1, array_agg(g::float8) FROM generate_series(1, 5000000) g""",
        {"p": OTHER_ID},
    )
    command = [sys.executable, "-m", "ordermon", "providers", "--json", "--config", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}
    peak = subprocess.run(
        [sys.executable, "-c", _PEAK, *command], capture_output=True, text=True, env=env
    )
    code, kilobytes = peak.stdout.split()
    assert code == "0", peak
    assert int(kilobytes) < 200_000, f"providers peaked at {int(kilobytes) // 1000} MB"
    listed = run_cli("providers", "--json", "--config", str(path))
    rows = {row["name"]: row["schedule"] for row in json.loads(listed.stdout)}
    assert "unreadable" in rows["beta"]["why"]
