"""The learned schedule in real sweeps: no history is backoff exactly, history places the
checks, the summary is refreshed at most every refresh_every, a corrupted one is backoff,
and an idle sweep never reads it."""

import datetime as dt
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from ordermon import config, db
from ordermon.dev import simulator
from ordermon.sweep import models, sweep
from tests.conftest import (
    PROVIDER_ID,
    FakeClock,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    run_cli,
)

LEARNED = {"mode": "learned", "min_samples": 100, "min_delay": "1s", "explore": 0}


def _config(db_url: str, sim_url: str, **schedule: Any) -> config.Config:
    document = config_document(db_url, sim_url)
    document["providers"][0]["schedule"] = schedule
    return config.parse(document, {})


def _sweep(conn: db.Connection, cfg: config.Config, clock: FakeClock) -> sweep.Report:
    return sweep.run(conn, cfg, sweep.Options(), clock=clock)


def finished_history(
    conn: db.Connection, sent: dt.datetime, intervals: list[tuple[float, float]]
) -> None:
    """Finished orders of the provider, sent at ``sent``, each with its last processing check L
    seconds and its completed check R seconds after "sentAt"."""
    user = add_user(conn)
    for lower, upper in intervals:
        order = add_order(
            conn, user, f"h-{uuid.uuid4()}", sent_at=sent, status="approved", external_status="done"
        )
        enrolment = conn.execute(
            """INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,
                   attempts, next_check_at, deadline, finished_at)
               VALUES (%(order)s, %(provider)s, 'h', %(sent)s, 'done', 2, %(sent)s,
                       %(sent)s + interval '1 hour', %(done)s) RETURNING id""",
            {
                "order": order,
                "provider": PROVIDER_ID,
                "sent": sent,
                "done": sent + dt.timedelta(seconds=upper),
            },
        ).fetchone()
        assert enrolment is not None
        checks = [(lower, "processing")] if lower > 0 else []
        for at, outcome in [*checks, (upper, "completed")]:
            conn.execute(
                """INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id,
                       checked_at, outcome, counted)
                   VALUES (%(enrolment)s, %(order)s, %(provider)s, %(at)s, %(outcome)s, true)""",
                {
                    "enrolment": enrolment["id"],
                    "order": order,
                    "provider": PROVIDER_ID,
                    "at": sent + dt.timedelta(seconds=at),
                    "outcome": outcome,
                },
            )


def _history(conn: db.Connection, now: dt.datetime, intervals: list[tuple[float, float]]) -> None:
    finished_history(conn, now - dt.timedelta(hours=1), intervals)


def _offsets(
    conn: db.Connection, cfg: config.Config, clock: FakeClock, order: uuid.UUID, sweeps: int
) -> list[float]:
    """The pause each sweep set before the order's next check (the order stays processing)."""
    found = []
    for _ in range(sweeps):
        _sweep(conn, cfg, clock)
        row = enrolment_of(conn, order)
        found.append((row["next_check_at"] - clock.now).total_seconds())
        clock.now = row["next_check_at"]
    return found


def test_no_history_behaves_exactly_like_backoff(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """The same pauses, check after check, in both modes while nothing is learned; the
    learned one says why it is backoff."""
    user = add_user(conn)
    clock = FakeClock()
    runs = {}
    for mode in ("backoff", "learned"):
        order = add_order(conn, user, f"slow-{mode}", sent_at=clock.now)
        schedule = LEARNED if mode == "learned" else {}
        runs[mode] = _offsets(conn, _config(db_url, sim.url, **schedule), clock, order, 6)
        why = enrolment_of(conn, order)["next_check_why"]
        if mode == "learned":
            assert why.startswith("backoff: 0 finished orders in the window")
        else:
            assert why == "backoff after check 6"
    assert runs["learned"] == runs["backoff"] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_history_places_the_checks(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    """A provider that always answers between 20 s and 30 s after "sentAt": the summary
    learns it, an order unanswered at 0 s is next checked by 30 s (backoff: 1 s), and a new
    order's first check is put there too (max_delay 1m lets it wait that long)."""
    clock = FakeClock()
    _history(conn, clock.now, [(20.0, 30.0)] * 150)
    cfg = _config(db_url, sim.url, **LEARNED, max_delay="1m")
    first = add_order(conn, add_user(conn), "first", sent_at=clock.now)
    _sweep(conn, cfg, clock)
    stored = conn.execute("SELECT * FROM ordermon_schedule_models").fetchone()
    assert stored is not None
    assert stored["samples"] == 150 and 20 <= stored["p50"] <= 30 and stored["covered"] == 1
    row = enrolment_of(conn, first)
    assert 20 <= (row["next_check_at"] - clock.now).total_seconds() <= 30
    assert row["next_check_why"].startswith("learned plan (learned from 150 orders, p50 ")
    second = add_order(conn, add_user(conn), "second", sent_at=clock.now)
    _sweep(conn, cfg, clock)
    row = enrolment_of(conn, second)
    assert 20 <= (row["next_check_at"] - row["sent_at"]).total_seconds() <= 30
    assert row["next_check_why"] == "the first check: learned from 150 orders"


def test_the_summary_is_refreshed_at_most_every_refresh_every(
    conn: db.Connection, sim: simulator.Simulator, db_url: str
) -> None:
    clock = FakeClock()
    _history(conn, clock.now, [(0.0, 5.0)] * 120)
    cfg = _config(db_url, sim.url, **LEARNED, refresh_every="5m")
    user = add_user(conn)

    def computed() -> dt.datetime:
        row = conn.execute("SELECT computed_at FROM ordermon_schedule_models").fetchone()
        assert row is not None
        return row["computed_at"]  # type: ignore[no-any-return]

    add_order(conn, user, "a", sent_at=clock.now)
    _sweep(conn, cfg, clock)
    once = computed()
    clock.advance(60)
    add_order(conn, user, "b", sent_at=clock.now)
    _sweep(conn, cfg, clock)
    assert computed() == once
    clock.advance(300)
    add_order(conn, user, "c", sent_at=clock.now)
    _sweep(conn, cfg, clock)
    assert computed() == clock.now


def test_a_corrupted_summary_means_backoff_and_a_warning(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    conn.execute(
        """INSERT INTO ordermon_schedule_models (provider_id, computed_at, samples, covered,
               quantiles) VALUES (%(p)s, %(now)s, 500, 1, '{30, 10, NaN}')""",
        {"p": PROVIDER_ID, "now": clock.now},
    )
    order = add_order(conn, add_user(conn), "x", sent_at=clock.now)
    with caplog.at_level(logging.WARNING):
        report = _sweep(conn, _config(db_url, sim.url, **LEARNED), clock)
    assert report.counts["processing"] == 1
    row = enrolment_of(conn, order)
    assert (row["next_check_at"] - clock.now).total_seconds() == 1.0  # backoff's first pause
    assert row["next_check_why"].startswith("backoff: the learned summary is unreadable")
    assert "not usable" in caplog.text


def test_an_idle_sweep_reads_no_summary(
    conn: db.Connection,
    sim: simulator.Simulator,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing new and nothing due: no summary is read, refreshed or planned."""
    clock = FakeClock()
    cfg = _config(db_url, sim.url, **LEARNED)
    add_order(conn, add_user(conn), "waiting", sent_at=clock.now)
    _sweep(conn, cfg, clock)  # enrols and checks it: its next check is later

    def forbidden(*args: object, **kwargs: object) -> Any:
        raise AssertionError("an idle sweep read the learned summary")

    monkeypatch.setattr(models, "choices", forbidden)
    monkeypatch.setattr(models, "first_checks", forbidden)
    report = _sweep(conn, cfg, clock)
    assert report.counts["claimed"] == 0


def test_providers_and_show_say_the_schedule(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`providers` gives the mode, the sample size and the learned p50 / p90 (the table and
    --json); `show` says why the next check is when it is."""
    clock = FakeClock()
    _history(conn, clock.now, [(20.0, 30.0)] * 150)
    document = config_document(db_url, sim.url)
    document["providers"][0]["schedule"] = LEARNED | {"max_delay": "1m"}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(document))
    order = add_order(conn, add_user(conn), "seen", sent_at=clock.now)
    _sweep(conn, config.parse(document, {}), clock)
    listed = run_cli("providers", "--json", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["schedule"]["mode"] == "learned" and row["schedule"]["in_use"] == "learned"
    assert row["schedule"]["samples"] == 150
    assert 20 <= row["schedule"]["p50_s"] <= 30 and 20 <= row["schedule"]["p90_s"] <= 30
    table = run_cli("providers", "--config", str(path))
    assert table.returncode == 0, table.stderr
    assert "learned: 150 orders, p50 2" in " ".join(table.stdout.split())
    assert "(at the last refresh, " in " ".join(table.stdout.split())  # not a live count
    shown = run_cli("show", str(order), "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "(learned plan (learned from 150 orders, p50 " in " ".join(shown.stdout.split())
    document["providers"][0]["schedule"] = {}
    path.write_text(json.dumps(document))
    [row] = json.loads(run_cli("providers", "--json", "--config", str(path)).stdout)
    assert row["schedule"] == {"mode": "backoff", "in_use": "backoff"}
