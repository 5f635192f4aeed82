"""Findings of the hostile review of the learned schedule (issue 13): a stored summary, a
history or a config that ordermon did not expect, as real processes meet them."""

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import (
    PROVIDER_ID,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    run_cli,
)

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
