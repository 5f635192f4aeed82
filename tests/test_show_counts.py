"""`ordermon show` counts a dispatch's checks as its rows do: which counted toward the
schedule, which were the provider's trouble; a finished dispatch has no next check. Real
sweeps against the simulator, real PostgreSQL, the CLI as a process."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ordermon import config, db
from ordermon.dev import simulator
from ordermon.sweep import sweep
from tests.conftest import FakeClock, add_order, add_user, config_document, run_cli


@pytest.fixture
def setup(conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path) -> Any:
    # One request at a time, in claim order: which order's answer comes first is known.
    document = config_document(
        db_url,
        sim.url,
        provider={"max_concurrency": 1},
        sweep={"batch_size": 50, "concurrency": 1, "lease": "60s"},
    )
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(document))
    cfg = config.parse(document, {})
    clock = FakeClock()

    def swept(*labels: str) -> None:
        """One real sweep, with only these orders due."""
        conn.execute(
            "UPDATE ordermon_enrolments SET next_check_at = next_check_at + interval '10 days' "
            "WHERE state = 'waiting' AND NOT reference = ANY(%(labels)s)",
            {"labels": list(labels)},
        )
        clock.advance(60)
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        conn.execute(
            "UPDATE ordermon_enrolments SET next_check_at = next_check_at - interval '10 days' "
            "WHERE state = 'waiting' AND next_check_at > now() + interval '9 days'"
        )

    return {"config": str(path), "swept": swept, "user": add_user(conn)}


def _show(order: Any, config_path: str) -> tuple[str, dict[str, Any]]:
    text = run_cli("show", str(order), "--config", config_path)
    assert text.returncode == 0, text.stderr
    picture = run_cli("show", str(order), "--json", "--config", config_path)
    return text.stdout, json.loads(picture.stdout)


def _stored(conn: db.Connection, order: Any) -> dict[str, Any]:
    row = conn.execute(
        """SELECT e.attempts, e.state, count(a.id) AS rows,
                  count(a.id) FILTER (WHERE a.counted) AS counted,
                  count(a.id) FILTER (WHERE NOT a.counted AND a.trouble IS NOT NULL) AS trouble
           FROM ordermon_enrolments e LEFT JOIN ordermon_attempts a ON a.enrolment_id = e.id
           WHERE e.order_id = %(id)s GROUP BY e.id""",
        {"id": order},
    ).fetchone()
    assert row is not None
    return row


def _dispatch_line(text: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith("dispatch ")]
    return line


def _marks(text: str) -> list[str]:
    """The "counted" column of the attempts table, row by row."""
    rows = text[text.index("\nattempts\n") :]
    return re.findall(r"(yes|no: provider trouble|no: taken over|not known)", rows)


def test_a_finished_order_after_provider_trouble(
    conn: db.Connection, sim: simulator.Simulator, setup: dict[str, Any]
) -> None:
    """HTTP 500, then completed: two rows, one counted and one provider trouble; done, so no
    next check; the header says so and the rows are marked so."""
    order = add_order(conn, setup["user"], "bumpy")
    sim.script("bumpy", "http500", "completed:PIN-1")
    setup["swept"]("bumpy")
    setup["swept"]("bumpy")
    assert _stored(conn, order) == {
        "attempts": 1,
        "state": "done",
        "rows": 2,
        "counted": 1,
        "trouble": 1,
    }
    text, picture = _show(order, setup["config"])
    line = _dispatch_line(text)
    assert "done, 2 checks: 1 counted, 1 provider trouble (HTTP 500); finished " in line, line
    assert "next check" not in text and "(s)" not in text
    [enrolment] = picture["enrolments"]
    assert (enrolment["checks"], enrolment["counted"], enrolment["provider_trouble"]) == (2, 1, 1)
    assert enrolment["attempts"] == enrolment["counted"]
    assert enrolment["next_check_at"] is None
    assert [a["counts"] for a in picture["attempts"]] == ["provider trouble", "counted"]
    assert _marks(text) == ["no: provider trouble", "yes"]


def test_a_waiting_order_after_provider_trouble_only(
    conn: db.Connection, sim: simulator.Simulator, setup: dict[str, Any]
) -> None:
    """One HTTP 500 and nothing else: 1 check, 0 counted (the old header said "0 attempt(s)"
    above the row); still waiting, so the next check is shown."""
    order = add_order(conn, setup["user"], "down")
    sim.script("down", "http500")
    setup["swept"]("down")
    assert _stored(conn, order)["attempts"] == 0
    text, _ = _show(order, setup["config"])
    line = _dispatch_line(text)
    assert "waiting, 1 check: 0 counted, 1 provider trouble (HTTP 500); next check " in line
    assert _marks(text) == ["no: provider trouble"]


def test_the_orders_own_failure_counts(
    conn: db.Connection, sim: simulator.Simulator, setup: dict[str, Any]
) -> None:
    """A 500 about one order while the provider answers another in the same sweep is that
    order's own error: it counts (and the header agrees with the schedule)."""
    add_order(conn, setup["user"], "fine")
    order = add_order(conn, setup["user"], "own")
    sim.script("fine", "processing")
    sim.script("own", "http500")
    setup["swept"]("fine", "own")
    stored = _stored(conn, order)
    assert (stored["attempts"], stored["counted"], stored["trouble"]) == (1, 1, 0)
    text, _ = _show(order, setup["config"])
    assert "waiting, 1 check: 1 counted; next check " in _dispatch_line(text)
    assert _marks(text) == ["yes"]


def test_requeued_and_unknown_rows_are_said(
    conn: db.Connection, sim: simulator.Simulator, setup: dict[str, Any]
) -> None:
    """After a requeue the schedule counts from zero while the rows stay: the header says
    both. A row from before sql/008 says its count is not known."""
    order = add_order(conn, setup["user"], "again")
    sim.script("again", "processing")
    setup["swept"]("again")
    conn.execute("UPDATE ordermon_enrolments SET state = 'expired' WHERE reference = 'again'")
    assert run_cli("requeue", str(order), "--config", setup["config"]).returncode == 0
    text, _ = _show(order, setup["config"])
    assert (
        "waiting, 1 check: 1 counted (the schedule counts 0 attempts: since a requeue)"
        in _dispatch_line(text)
    )
    conn.execute("UPDATE ordermon_attempts SET counted = NULL, trouble = NULL")
    text, _ = _show(order, setup["config"])
    assert "1 check: 0 counted, 1 not known" in _dispatch_line(text)
    assert _marks(text) == ["not known"]


def test_show_says_what_a_person_reads_never_python_words(
    conn: db.Connection, setup: dict[str, Any]
) -> None:
    """An order nobody has checked yet: its NULL columns are "-", its flags yes/no."""
    order = add_order(conn, setup["user"], reference="N-1")
    text, picture = _show(order, setup["config"])
    assert picture["order"]["last_sync_at"] is None  # NULL in the database, null in JSON
    words = set(re.findall(r"\b\w+\b", text))
    assert not words & {"None", "False", "True"}, text
    assert re.search(r"^\s*pin stored\s+no\s*$", text, re.M), text
