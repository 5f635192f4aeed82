"""status, show and requeue on a prepared database: the figures they print are the figures in
the database, counted here independently, in --json and in the table."""

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from ordermon import config, db
from ordermon.dev import simulator
from ordermon.sweep import sweep
from tests.conftest import (
    FakeClock,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    make_config,
    order_row,
    run_cli,
    write_config,
)


@pytest.fixture
def prepared(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> dict[str, Any]:
    """Orders in every state: completed, refunded, held, processing, expired, claimed,
    superseded, unreferenced, and a provider that is paused."""
    user = add_user(conn)
    now = dt.datetime.now(dt.UTC)
    sent = now - dt.timedelta(minutes=30)
    scripts = {
        "done1": "completed:P1",
        "done2": "completed:P2",
        "refused": "failed",
        "waiting1": "processing",
        "waiting2": "processing",
        "stuck": "processing",
    }
    orders = {label: add_order(conn, user, label, sent_at=sent) for label in scripts}
    for label, step in scripts.items():
        sim.script(label, step)
    orders["no-ref"] = add_order(conn, user, None, sent_at=sent)
    cfg = make_config(
        db_url,
        sim.url,
        schedule={
            "first_check_after": "0s",
            "base_delay": "10m",
            "max_delay": "10m",
            "jitter": 0,
            "give_up_after": "1h",
        },
    )
    sweep.run(conn, cfg, sweep.Options(), clock=FakeClock(now))
    # "stuck" expires at its deadline; "waiting2" is claimed by a sweep right now
    conn.execute(
        "UPDATE ordermon_enrolments SET state = 'expired', finished_at = now() "
        "WHERE reference = 'stuck'"
    )
    conn.execute(
        "UPDATE ordermon_enrolments SET claim_token = gen_random_uuid(), "
        "claimed_until = now() + interval '4 minutes', "
        "next_check_at = now() + interval '4 minutes' WHERE reference = 'waiting2'"
    )
    conn.execute(
        "UPDATE ordermon_enrolments SET next_check_at = now() - interval '1 second' "
        "WHERE reference = 'waiting1'"
    )
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url)
    return {"orders": orders, "config": str(config_path), "cfg": cfg}


def _independent(conn: db.Connection) -> dict[str, Any]:
    def count(sql: str) -> int:
        row = conn.execute(sql.encode()).fetchone()
        assert row is not None
        return int(row["n"])

    return {
        "waiting": count("SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting'"),
        "due": count(
            "SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'waiting' "
            "AND next_check_at <= now()"
        ),
        "claimed": count(
            "SELECT count(*) AS n FROM ordermon_enrolments WHERE claimed_until > now()"
        ),
        "expired": count("SELECT count(*) AS n FROM ordermon_enrolments WHERE state = 'expired'"),
        "completed_24h": count(
            "SELECT count(*) AS n FROM product_orders WHERE status = 'approved'"
        ),
        "failed_24h": count("SELECT count(*) AS n FROM product_orders WHERE status = 'rejected'"),
        "checks_1h": count("SELECT count(*) AS n FROM ordermon_attempts"),
        "no_reference": count(
            "SELECT count(*) AS n FROM product_orders "
            "WHERE provider_referans IS NULL AND status = 'pending'"
        ),
    }


def test_status_figures_match_the_database(conn: db.Connection, prepared: dict[str, Any]) -> None:
    """Per-provider figures in --json equal independent counts; exit 3 for the expired order."""
    result = run_cli("status", "--json", "--config", prepared["config"])
    assert result.returncode == 3, result.stderr  # an expired order waits for a person
    figures = json.loads(result.stdout)
    [row] = figures["providers"]
    expected = _independent(conn)
    assert {k: row[k] for k in expected} == expected
    assert expected == {
        "waiting": 2,
        "due": 1,
        "claimed": 1,
        "expired": 1,
        "completed_24h": 2,
        "failed_24h": 1,
        "checks_1h": 6,
        "no_reference": 1,
    }
    assert row["latency_p50_ms"] is not None and row["latency_p95_ms"] >= row["latency_p50_ms"]
    assert 1790 <= figures["oldest_waiting_age_s"] <= 1900
    assert any("expired order" in reason for reason in figures["attention"])
    [run] = figures["runs"]
    assert (run["claimed"], run["completed"], run["failed"], run["result"]) == (6, 2, 1, "ok")
    table = run_cli("status", "--config", prepared["config"])
    assert table.returncode == 3
    for label in ("alaya", "needs a person", "oldest waiting order: 30m"):
        assert label in table.stdout


def test_status_exit_codes(conn: db.Connection, prepared: dict[str, Any]) -> None:
    """0 when all is well; 3 for a paused provider or when no sweep succeeded lately; an
    expired order that someone has since decided no longer counts."""
    stuck = prepared["orders"]["stuck"]
    conn.execute("UPDATE product_orders SET status = 'approved' WHERE id = %(id)s", {"id": stuck})
    # A dispatched order without a reference is unwatched, which needs a person too.
    no_ref = prepared["orders"]["no-ref"]
    conn.execute("UPDATE product_orders SET status = 'approved' WHERE id = %(id)s", {"id": no_ref})
    assert run_cli("status", "--config", prepared["config"]).returncode == 0
    conn.execute("""UPDATE ordermon_provider_state SET pauses = 1, reason = 'transport',
                    paused_until = now() + interval '10 minutes'""")
    paused = run_cli("status", "--json", "--config", prepared["config"])
    assert paused.returncode == 3
    assert any("paused" in r for r in json.loads(paused.stdout)["attention"])
    conn.execute("DELETE FROM ordermon_provider_state")
    conn.execute("UPDATE ordermon_runs SET finished_at = now() - interval '6 minutes'")
    stale = run_cli("status", "--json", "--config", prepared["config"])
    assert stale.returncode == 3
    assert json.loads(stale.stdout)["attention"] == [
        "no successful sweep in the last 5 minutes: is cron running ordermon?"
    ]


def test_show_prints_the_timeline(
    conn: db.Connection, prepared: dict[str, Any], sim: simulator.Simulator
) -> None:
    """show: the order's columns, its schedule and every attempt, as stored."""
    order = prepared["orders"]["refused"]
    result = run_cli("show", str(order), "--json", "--config", prepared["config"])
    assert result.returncode == 0, result.stderr
    picture = json.loads(result.stdout)
    assert picture["order"]["status"] == "rejected"
    assert picture["refund"]["amount"] == "12.50"
    [enrolment] = picture["enrolments"]
    stored = enrolment_of(conn, order)
    assert (enrolment["state"], enrolment["attempts"]) == (stored["state"], stored["attempts"])
    rows = list(
        conn.execute(
            "SELECT outcome, applied, http_status, latency_ms FROM "
            "ordermon_attempts WHERE order_id = %(id)s",
            {"id": order},
        )
    )
    assert [
        {k: a[k] for k in ("outcome", "applied", "http_status", "latency_ms")}
        for a in picture["attempts"]
    ] == rows
    assert picture["attempts"][0]["provider"] == "alaya"
    table = run_cli("show", str(order), "--config", prepared["config"])
    assert "refunded" in table.stdout and "İptal edildi" in table.stdout
    missing = run_cli("show", str(uuid.uuid4()), "--config", prepared["config"])
    assert missing.returncode == 1 and "no such order" in missing.stderr


def test_requeue(
    conn: db.Connection, prepared: dict[str, Any], sim: simulator.Simulator, db_url: str
) -> None:
    """Expired and held orders get a fresh schedule; others are refused with a reason."""
    stuck, done = prepared["orders"]["stuck"], prepared["orders"]["done1"]
    dry = run_cli("requeue", "--expired", "--dry-run", "--config", prepared["config"])
    assert dry.returncode == 0 and f"{stuck}: ok: would requeue (expired)" in dry.stdout
    assert enrolment_of(conn, stuck)["state"] == "expired"
    refused = run_cli("requeue", str(done), "--config", prepared["config"])
    assert refused.returncode == 1
    assert f"{done}: refused: the order is approved, not pending" in refused.stdout
    result = run_cli("requeue", "--expired", "--provider", "alaya", "--config", prepared["config"])
    assert result.returncode == 0, result.stdout + result.stderr
    enrolment = enrolment_of(conn, stuck)
    assert (enrolment["state"], enrolment["attempts"]) == ("waiting", 0)
    assert enrolment["deadline"] > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)
    sim.script("stuck", "completed:LATE")
    cfg: config.Config = prepared["cfg"]
    sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
    assert order_row(conn, stuck)["pinCode"] == "LATE"
    again = run_cli("requeue", "--expired", "--config", prepared["config"])
    assert again.returncode == 0 and "nothing to requeue" in again.stdout


def test_requeue_a_held_order(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """A held order is watched again: externalStatus back to processing, checked anew."""
    document = config_document(db_url, sim.url, on_failed="hold")
    cfg = config.parse(document, {})
    order = add_order(conn, add_user(conn), "h1")
    sim.script("h1", "failed", "completed:SECOND-TIME")
    sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
    assert order_row(conn, order)["externalStatus"] == "failed"
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url, on_failed="hold")
    result = run_cli("requeue", str(order), "--config", str(config_path))
    assert result.returncode == 0, result.stdout
    assert order_row(conn, order)["externalStatus"] == "processing"
    sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
    assert (order_row(conn, order)["status"], order_row(conn, order)["pinCode"]) == (
        "approved",
        "SECOND-TIME",
    )


def test_requeue_usage(prepared: dict[str, Any]) -> None:
    """Neither ids nor --expired, or both: a usage error."""
    assert run_cli("requeue", "--config", prepared["config"]).returncode == 2
    both = run_cli("requeue", str(uuid.uuid4()), "--expired", "--config", prepared["config"])
    assert both.returncode == 2
