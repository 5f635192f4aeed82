"""`ordermon demo` runs the whole loop with no setup and cleans up after itself."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import run_cli
from tests.test_embedded import processes_holding


def test_demo_settles_every_order(tmp_path: Path) -> None:
    """Every order of a reachable provider ends approved, rejected with a refund, expired or
    superseded; the down provider's orders wait; the status view closes the show. When it
    returns, its private PostgreSQL has exited and its directory is gone."""
    started = time.monotonic()
    page = tmp_path / "out" / "demo-report.html"
    page.parent.mkdir()
    result = run_cli(
        "demo", "--orders", "20", "--report", str(page), env={"TMPDIR": str(tmp_path)}, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 120  # generous: the demo aims at well under a minute
    # Off a terminal the demo's text is plain and complete, like every table of ordermon's:
    # no box drawing, no word cut at 80 columns, no trailing blanks.
    assert not set(result.stdout) & set("┏━┳┃│┡╇└┘─"), result.stdout[:2000]
    assert all(line == line.rstrip() for line in result.stdout.splitlines())
    lines = result.stdout.splitlines()
    assert any("20 orders dispatched to four simulated providers" in line for line in lines)
    assert any(re.search(r"\bdelivered\b", line) for line in lines)
    out = " ".join(result.stdout.split())
    assert "20 orders dispatched to four simulated providers" in out
    assert "20 enrolled" in out
    assert "2 superseded" in out and "2 expired" in out
    assert "4 refunds worth 10.00 USD" in out
    assert "balance now 110.00 USD" in out
    assert "ordermon status at" in out and "provider down is paused" in out
    # It ends with its report page (ordermon report --html), path printed last.
    assert lines[-1].endswith(str(page)) and "report of the last hour" in lines[-1]
    text = page.read_text()
    assert 'id="time-to-final"' in text and "Plotly.newPlot" in text
    for provider in ("fast", "slow", "flaky", "down"):
        assert f"<td>{provider}</td>" in text
    assert processes_holding(str(tmp_path)) == []  # no postgres left for its data directory
    assert list(tmp_path.glob("ordermon-demo-*")) == []


def test_demo_without_plotly_says_how_to_get_the_report(tmp_path: Path) -> None:
    """Without the report extra the demo still ends well, and names the pip command."""
    fake = tmp_path / "site" / "plotly"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no plotly in this test')\n")
    page = tmp_path / "demo-report.html"
    result = run_cli(
        "demo",
        "--orders",
        "4",
        "--report",
        str(page),
        env={"TMPDIR": str(tmp_path), "PYTHONPATH": str(fake.parent)},
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'ordermon[report]'" in " ".join(result.stdout.split())
    assert not page.exists()


def test_demo_with_a_bad_report_path_stops_before_it_starts(tmp_path: Path) -> None:
    result = run_cli("demo", "--report", str(tmp_path / "missing" / "r.html"), timeout=60)
    assert result.returncode == 2 and "--report" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "starting" not in result.stdout


def test_demo_stopped_by_sigterm_leaves_no_postgres(tmp_path: Path) -> None:
    """SIGTERM in the middle of the demo ends it as Ctrl-C does: its private PostgreSQL is
    stopped and its directory removed on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "ordermon", "demo", "--orders", "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**env, "TMPDIR": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("ordermon-demo-*/pg/postmaster.pid")):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        time.sleep(2)  # into its sweeps
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert processes_holding(str(tmp_path)) == []
    assert list(tmp_path.glob("ordermon-demo-*")) == []
