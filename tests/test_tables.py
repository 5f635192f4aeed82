"""What the table-printing commands show outside a terminal (cron mail, a pipe, `| less`):
plain, complete text at any COLUMNS; and on a terminal (tmux at 80 columns) long cells fold
onto the next line instead of being cut."""

import datetime as dt
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ordermon import config, db
from ordermon.config import human
from ordermon.dev import simulator
from ordermon.sweep import sweep
from tests.conftest import (
    FakeClock,
    add_order,
    add_user,
    config_document,
    run_cli,
)

ROOT = Path(__file__).resolve().parent.parent
LONG_NAME = "alaya-the-provider-with-a-name-long-enough-to-overflow-80-columns"[:64]
LONG_MESSAGE = (
    "Siparis kuyrukta bekliyor; tedarikci sistemi yogun oldugu icin teslimat gecikebilir, "
    "lutfen daha sonra tekrar sorgulayin (kuyruk sirasi 4711)"
)
LONG_ERROR = (
    "HTTP 502 from https://shop.example/hooks/ordermon: the receiver said its upstream "
    "application server did not answer within the gateway's thirty second limit"
)
# Rich's box drawing characters (and the light/heavy lines around them).
BOX = re.compile(r"[\u2500-\u257f]")
FULL_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"  # JSON
SHOWN_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d"  # for a person


@pytest.fixture
def shop(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> dict[str, Any]:
    """Real sweeps against the simulator: an order still processing with a long message, one
    completed after an HTTP 500, one expired; a failed webhook delivery with a long error."""
    user = add_user(conn)
    document = config_document(db_url, sim.url, provider={"name": LONG_NAME})
    cfg = config.parse(document, {})
    orders = {label: add_order(conn, user, label) for label in ("slow", "bumpy", "late")}
    sim.script("slow", f"raw:OK|1| - |{LONG_MESSAGE}")
    sim.script("bumpy", "http500", "completed:PIN-77")
    sim.script("late", "processing")
    clock = FakeClock()
    sweep.run(conn, cfg, sweep.Options(), clock=clock)
    clock.advance(120)
    sweep.run(conn, cfg, sweep.Options(), clock=clock)
    conn.execute(
        "UPDATE ordermon_enrolments SET state = 'expired', finished_at = now() "
        "WHERE reference = 'late'"
    )
    conn.execute(
        """INSERT INTO ordermon_deliveries (event_id, webhook, state, attempts, next_attempt_at,
               last_status, last_error)
           SELECT id, 'backend', 'dead', 12, now(), 502, %(error)s FROM ordermon_events""",
        {"error": LONG_ERROR},
    )
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(document))
    return {"orders": orders, "config": str(path), "cfg": cfg}


def _piped(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``ordermon ARGS`` with stdout a pipe, as cron runs it, claiming 80 columns."""
    return run_cli(*args, env={"COLUMNS": "80", **env})


def _plain(output: str) -> None:
    assert "…" not in output
    assert not BOX.search(output), output
    assert all(line == line.rstrip(" ") for line in output.splitlines())


def test_tables_off_a_terminal_are_plain_and_complete(shop: dict[str, Any]) -> None:
    """status, show, providers, events list and requeue print every value whole at
    COLUMNS=80 with stdout a pipe: no "…", no box drawing."""
    cfg_path = shop["config"]
    status = _piped("status", "--config", cfg_path)
    figures = json.loads(_piped("status", "--json", "--config", cfg_path).stdout)
    _plain(status.stdout)
    assert LONG_NAME in status.stdout
    runs = figures["runs"]
    assert runs and all(human.moment(run["started_at"]) in status.stdout for run in runs)
    assert re.search(f"ordermon status at {SHOWN_TIME}\n", status.stdout)

    slow = _piped("show", str(shop["orders"]["slow"]), "--config", cfg_path)
    assert slow.returncode == 0, slow.stderr
    _plain(slow.stdout)
    assert LONG_MESSAGE in slow.stdout and LONG_NAME in slow.stdout
    picture = json.loads(
        _piped("show", str(shop["orders"]["slow"]), "--json", "--config", cfg_path).stdout
    )
    for attempt in picture["attempts"]:
        assert human.moment(attempt["checked_at"]) in slow.stdout
        assert attempt["excerpt"] in slow.stdout  # the reply excerpt, not its first 60
    [enrolment] = picture["enrolments"]
    assert human.moment(enrolment["deadline"]) in slow.stdout
    assert human.moment(enrolment["sent_at"]) in slow.stdout

    providers = _piped("providers", "--config", cfg_path)
    _plain(providers.stdout)
    assert LONG_NAME in providers.stdout
    assert "timeout 5s, 8 in flight, no rate limit, batch 1" in providers.stdout

    events = _piped("events", "list", "--config", cfg_path)
    assert events.returncode == 0, events.stderr
    _plain(events.stdout)
    assert LONG_ERROR in events.stdout

    requeue = _piped("requeue", str(shop["orders"]["late"]), "--config", cfg_path)
    assert requeue.returncode == 0, requeue.stderr
    _plain(requeue.stdout)
    assert re.search(f"new deadline {SHOWN_TIME}\n", requeue.stdout), requeue.stdout


def test_boxes_off_a_terminal_only_when_asked(shop: dict[str, Any]) -> None:
    """ORDERMON_BOX=1 draws the boxes in a pipe too, still without cutting a cell."""
    boxed = _piped("providers", "--config", shop["config"], ORDERMON_BOX="1")
    assert BOX.search(boxed.stdout) and "…" not in boxed.stdout
    assert LONG_NAME in boxed.stdout


def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, check=False, timeout=30
    )


def _on_terminal(tmp_path: Path, *args: str, columns: int = 80) -> str:
    """What ``ordermon ARGS`` leaves on a real terminal (tmux) ``columns`` wide."""
    socket = f"ordermon-test-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "done"
    command = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "ordermon", *args))
    script = tmp_path / "run.sh"
    script.write_text(
        f"cd {shlex.quote(str(ROOT))}\nunset COLUMNS LINES\n{command}\n"
        f"echo EXIT=$? > {shlex.quote(str(done))}\nsleep 60\n"
    )
    size = ("-x", str(columns), "-y", "200")
    started = _tmux(socket, "new-session", "-d", "-s", "t", *size, f"sh {script}")
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.exists(), "the command did not finish"
        # -J would join wrapped lines: without it, each screen line is one line
        pane = _tmux(socket, "capture-pane", "-p", "-t", "t", "-S", "-200").stdout
    finally:
        _tmux(socket, "kill-server")
    return pane


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: no terminal")
def test_long_cells_fold_on_a_terminal(shop: dict[str, Any], tmp_path: Path) -> None:
    """At 80 columns `show` folds the long message over several lines of its cell: every
    piece of it is on screen, nothing is cut with "…"; the boxes stay."""
    pane = _on_terminal(tmp_path, "show", str(shop["orders"]["slow"]), "--config", shop["config"])
    lines = pane.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert BOX.search(pane) and "…" not in pane, pane
    # The message column of the attempts table, read down: both checks' whole message.
    [header] = [line for line in lines if line.startswith("┃ time")]
    position = [part.strip() for part in header.split("┃")].index("message")
    body = [line for line in lines[lines.index(header) :] if line.startswith("│")]
    column = [line.split("│")[position].strip() for line in body]
    assert len(body) >= 6, pane  # folded over several lines
    assert "".join(column).replace(" ", "") == 2 * LONG_MESSAGE.replace(" ", "")


def test_json_keeps_iso_times(shop: dict[str, Any]) -> None:
    """The JSON keeps ISO-8601 times with their offset."""
    picture = json.loads(
        _piped("show", str(shop["orders"]["bumpy"]), "--json", "--config", shop["config"]).stdout
    )
    for attempt in picture["attempts"]:
        assert re.fullmatch(FULL_TIME, attempt["checked_at"])
        assert dt.datetime.fromisoformat(attempt["checked_at"]).utcoffset() is not None
