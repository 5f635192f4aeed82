"""With `timezone: Asia/Damascus` every time ordermon prints for a person is in that zone, in
one format (``2026-12-03 21:20:36 +03:00``): status, show, providers, requeue, events list,
check's refusal and a sweep's warning; none says UTC. JSON keeps ISO-8601 with the offset."""

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import add_order, add_user, config_document, run_cli

LOCAL = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+03:00"
ANY_TIME = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d"


@pytest.fixture
def damascus(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> dict[str, Any]:
    """Two real sweeps (as processes): one completes an order (an event) and leaves another
    processing; the next meets an HTTP 500 and pauses the provider (after one failure)."""
    document = config_document(
        db_url,
        sim.url,
        provider={"pause": {"after_failures": 1, "cooldown": "10m", "max_cooldown": "1h"}},
        timezone="Asia/Damascus",
    )
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(document))
    # The same, with a health ping nobody answers: each sweep logs a warning line.
    pinged = tmp_path / "pinged.yaml"
    ping = {"ping_url": "http://127.0.0.1:9/ping", "timeout": "1s"}
    pinged.write_text(json.dumps(document | {"healthcheck": ping}))
    user = add_user(conn)
    orders = {label: add_order(conn, user, label) for label in ("ok", "late")}
    sim.script("ok", "completed:PIN-9")
    sim.script("late", "processing")
    first = run_cli("sweep", "--config", str(path))
    assert first.returncode == 0, first.stderr
    conn.execute(
        "UPDATE ordermon_enrolments SET state = 'expired', finished_at = now() "
        "WHERE reference = 'late'"
    )
    orders["down"] = add_order(conn, user, "down")
    sim.script("down", "http500")
    second = run_cli("sweep", "-v", "--config", str(pinged))
    return {
        "config": str(path),
        "pinged": str(pinged),
        "orders": orders,
        "sweep_stderr": second.stderr,
    }


def _local_only(text: str) -> int:
    """Every time in ``text`` is in the one local format; returns how many there are."""
    assert "UTC" not in text and "+00:00" not in text, text
    found = re.findall(ANY_TIME, text)
    assert len(re.findall(LOCAL, text)) == len(found), text
    return len(found)


def test_every_printed_time_is_local(damascus: dict[str, Any], conn: db.Connection) -> None:
    cfg = damascus["config"]
    assert "paused until" in damascus["sweep_stderr"]
    # the warning, and the log lines' own times (sweep -v)
    assert _local_only(damascus["sweep_stderr"]) >= 2

    status = run_cli("status", "--config", cfg)
    assert "paused until" in status.stdout
    assert _local_only(status.stdout + status.stderr) >= 4  # now, pause, pause, two runs

    providers = run_cli("providers", "--config", cfg)
    assert "paused until" in providers.stdout
    assert _local_only(providers.stdout + providers.stderr) == 1

    show = run_cli("show", str(damascus["orders"]["ok"]), "--config", cfg)
    assert show.returncode == 0, show.stderr
    assert _local_only(show.stdout) >= 6  # sent, synced, completed, dispatch, finished, check

    requeue = run_cli("requeue", str(damascus["orders"]["late"]), "--config", cfg)
    assert requeue.returncode == 0, requeue.stderr
    assert re.search(f"new deadline {LOCAL}", requeue.stdout), requeue.stdout
    assert _local_only(requeue.stdout) == 1

    events = run_cli("events", "list", "--config", cfg)
    assert events.returncode == 0, events.stderr
    assert _local_only(events.stdout) >= 1

    conn.execute(
        "UPDATE ordermon_enrolments SET claim_token = gen_random_uuid(), "
        "claimed_until = now() + interval '4 minutes' WHERE reference = 'late'"
    )
    check = run_cli("check", str(damascus["orders"]["late"]), "--config", cfg)
    assert check.returncode != 0 and "claimed until" in check.stderr
    assert _local_only(check.stderr) == 1


def test_json_stays_iso_with_the_offset(damascus: dict[str, Any]) -> None:
    cfg = damascus["config"]
    figures = json.loads(run_cli("status", "--json", "--config", cfg).stdout)
    picture = json.loads(
        run_cli("show", str(damascus["orders"]["ok"]), "--json", "--config", cfg).stdout
    )
    events = json.loads(run_cli("events", "list", "--json", "--config", cfg).stdout)
    requeue = json.loads(
        run_cli("requeue", str(damascus["orders"]["late"]), "--json", "--config", cfg).stdout
    )
    sweep = run_cli("sweep", "--log-format", "json", "--config", damascus["pinged"])
    lines = [json.loads(line) for line in sweep.stderr.splitlines()]
    logged = [line["time"] for line in lines if "time" in line]
    assert logged, sweep.stderr
    assert all(re.fullmatch(r"\S+T\d\d:\d\d:\d\d\.\d{3}\+03:00", t) for t in logged), logged
    times = [
        figures["now"],
        figures["runs"][0]["started_at"],
        picture["order"]["sent_at"],
        picture["attempts"][0]["checked_at"],
        events[0]["created_at"],
        requeue[0]["deadline"],
    ]
    for value in times:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00", value), value
        assert dt.datetime.fromisoformat(value).utcoffset() == dt.timedelta(hours=3)


def test_one_format_for_every_zone() -> None:
    """The helper every human-facing time goes through: date, clock, offset; a time given as
    ISO-8601 keeps its own offset."""
    from ordermon.config import human

    at = dt.datetime(2026, 12, 3, 18, 20, 36, 500000, tzinfo=dt.UTC)
    assert human.moment(at, "Asia/Damascus") == "2026-12-03 21:20:36 +03:00"
    assert human.moment(at, "America/St_Johns") == "2026-12-03 14:50:36 -03:30"
    assert human.moment(at, "UTC") == "2026-12-03 18:20:36 +00:00"
    assert human.moment("2026-12-03T21:20:36+03:00") == "2026-12-03 21:20:36 +03:00"
    assert human.iso(at, "Asia/Damascus") == "2026-12-03T21:20:36+03:00"
    assert [human.plural(n, "attempt") for n in (0, 1, 2)] == [
        "0 attempts",
        "1 attempt",
        "2 attempts",
    ]
    assert human.plural(3, "delivery", "deliveries") == "3 deliveries"
