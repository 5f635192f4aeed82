"""`ordermon demo` runs the whole loop with no setup and cleans up after itself."""

import tempfile
import time
from pathlib import Path

from tests.conftest import run_cli


def _demo_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("ordermon-demo-*"))


def test_demo_settles_every_order() -> None:
    """Every order of a reachable provider ends approved, rejected with a refund, expired or
    superseded; the down provider's orders wait; the status view closes the show."""
    before = _demo_dirs()
    started = time.monotonic()
    result = run_cli("demo", "--orders", "20", timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 120  # generous: the demo aims at well under a minute
    out = " ".join(result.stdout.split())  # rich wraps lines at the terminal width
    assert "20 orders dispatched to four simulated providers" in out
    assert "20 enrolled" in out
    assert "2 superseded" in out and "2 expired" in out
    assert "4 refunds worth 10.00 USD" in out
    assert "balance now 110.00 USD" in out
    assert "ordermon status at" in out and "provider down is paused" in out
    assert _demo_dirs() == before
