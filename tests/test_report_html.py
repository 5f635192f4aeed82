"""`ordermon report --html`: the page in a real browser (Debian's chromium, headless, driven by
playwright) with the network off, hostile text from the database shown as text, the atomic
write and its errors, and the message without the report extra."""

import datetime as dt
import html
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from ordermon import db, errors
from ordermon.ops import report, report_charts, report_html
from tests.conftest import add_user, make_config, run_cli, write_config
from tests.test_report import finished, waiting

HOSTILE = "<img src=x onerror=alert(1)>"
CLOSER = "</script>"  # a currency: varchar(10)
CHROMIUM = "/usr/bin/chromium"


def _chromium() -> str:
    """Debian's chromium; in CI (or with the test database given) its absence is a failure."""
    found = shutil.which("chromium") or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if found:
        return found
    if os.environ.get("CI") or os.environ.get("ORDERMON_TEST_DSN"):
        pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
    pytest.skip(
        "chromium is not installed (Debian: apt-get install --no-install-recommends chromium)"
    )


def recent_history(conn: db.Connection) -> dict[str, uuid.UUID]:
    """A small history in the last two days (the command reads the real clock): every chart
    has marks; a provider that is not configured has a hostile id and a hostile currency."""
    user = add_user(conn)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def ago(hours: float) -> dt.datetime:
        return now - dt.timedelta(hours=hours)

    made = {
        "slow": finished(conn, user, ago(30), 4000, 5, "held", number=1, errors_first=2),
        "a2": finished(conn, user, ago(29), 20, 2, "completed", number=2),
        "a3": finished(conn, user, ago(26), 45, 3, "refunded", number=3),
        "a4": finished(conn, user, ago(5), 100, 2, "rejected", number=4),
        "a5": finished(conn, user, ago(3), 700, 4, "expired", number=5),
        "a6": finished(conn, user, ago(2), 5, 1, "refunded", number=6, refund=("5.00", "EUR")),
        "evil": finished(
            conn,
            user,
            ago(4),
            60,
            3,
            "refunded",
            number=7,
            provider_id=HOSTILE,
            refund=("7.00", CLOSER),
            errors_first=1,
        ),
    }
    for number, age in enumerate((100, 1000, 7200), 20):
        waiting(conn, user, now - dt.timedelta(seconds=age), number)
    return made


def _figures(conn: db.Connection) -> dict[str, Any]:
    cfg = make_config("postgresql://unused", "http://unused")
    return report.gather(conn, cfg, dt.datetime.now(dt.UTC))


def _cli(tmp_path: Path, db_url: str, *args: str, **env: str) -> Any:
    path = write_config(tmp_path / "c.yaml", db_url, "http://unused")
    return run_cli("report", "--config", str(path), *args, env=env)


def test_hostile_text_is_escaped_in_the_page(conn: db.Connection) -> None:
    recent_history(conn)
    figures = _figures(conn)
    assert HOSTILE in [p["name"] for p in figures["providers"]]
    # A plotly.js that ever spelled </script in a string would not end its block either.
    page = report_html.page(figures, 'var end = "</script>";')
    assert HOSTILE not in page and "<img" not in page
    # The only </script> are the page's own: its three script blocks.
    assert page.lower().count("</script") == 3
    assert html.escape(HOSTILE) in page  # the summary table and the lists


def test_every_chart_is_a_valid_plotly_figure(conn: db.Connection) -> None:
    """plotly's own validation of every attribute (plotly.js ignores unknown ones)."""
    import plotly.graph_objects as go

    recent_history(conn)
    figures = _figures(conn)
    made = report_charts.charts(figures)
    assert [c["id"] for c in made][:2] == ["time-to-final", "percentiles"]
    # The hours' axis is the whole period, in the zone's wall clock (UTC here).
    [rate] = [c for c in made if c["id"] == "error-rate"]
    assert rate["layout"]["xaxis"]["range"] == [figures[k][:19] for k in ("since", "now")]
    for chart in made:
        go.Figure(data=chart["data"], layout=chart["layout"])


def test_a_provider_has_one_colour_on_every_chart(conn: db.Connection) -> None:
    """Each provider's traces carry its own colour on every chart that shows providers (a
    reader must not take one for another), and a provider with nothing finished is not in the
    time-to-final legend."""
    recent_history(conn)
    figures = _figures(conn)
    names = [report_charts.label(p["name"]) for p in figures["providers"]]
    colours: dict[str, set[str]] = {}
    for chart in report_charts.charts(figures):
        if chart["id"] == "percentiles" or chart["id"].startswith("outcomes-"):
            continue  # one series per quantile or outcome word, not per provider
        for trace in chart["data"]:
            name = trace["name"]
            owner = next(n for n in names if name == n or name.startswith(n + " "))
            colours.setdefault(owner, set()).add(trace["marker"]["color"])
            if trace["type"] == "scatter":
                assert trace["line"]["color"] == trace["marker"]["color"]
    assert len(colours) >= 2 and all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)
    [histogram] = [c for c in report_charts.charts(figures) if c["id"] == "time-to-final"]
    finished_names = {report_charts.label(p["name"]) for p in figures["providers"] if p["finished"]}
    assert {trace["name"] for trace in histogram["data"]} == finished_names


def test_hours_without_checks_are_gaps() -> None:
    hours = [
        {"hour": "2026-12-02T10:00:00+03:00", "error_rate": 0.5},
        {"hour": "2026-12-02T13:00:00+03:00", "error_rate": 0.0},
    ]
    x, y = report_charts._hourly(hours, "error_rate", "Europe/Istanbul")
    assert x == [f"2026-12-02T{h}:00:00" for h in (10, 11, 12, 13)]
    assert y == [0.5, None, None, 0.0]


def test_the_write_is_atomic_and_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    os.chmod(target, 0o600)
    report_html.write(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_failed_write_leaves_the_old_page_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")

    def full(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(errors.UsageError, match="No space left"):
        report_html.write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_html_with_since_and_provider_prints_the_path(
    tmp_path: Path, db_url: str, conn: db.Connection
) -> None:
    recent_history(conn)
    target = tmp_path / "www" / "report.html"
    target.parent.mkdir()
    done = _cli(tmp_path, db_url, "--html", str(target), "--since", "2d", "--provider", "alaya")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{target}\n" and done.stderr == ""
    text = target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert "alaya" in text and html.escape(HOSTILE) not in text  # --provider alaya only
    assert 'id="slowest"' in text and "Plotly.newPlot" in text


@pytest.mark.parametrize("where", ["missing/report.html", ".", "/proc/ordermon-report.html"])
def test_a_bad_path_is_a_clear_error(tmp_path: Path, db_url: str, where: str) -> None:
    """A directory that is missing, a directory given as the file, one that cannot be
    written to (/proc, even for root): exit 2, no traceback, nothing written."""
    target = where if where.startswith("/") else str(tmp_path / where)
    done = _cli(tmp_path, db_url, "--html", target)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "--html" in done.stderr, done.stderr
    assert done.stdout == ""
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_without_plotly_the_message_names_the_extra(tmp_path: Path, db_url: str) -> None:
    """A plotly that cannot be imported (first on the path): exit 2 and the pip command."""
    fake = tmp_path / "site" / "plotly"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no plotly in this test')\n")
    target = tmp_path / "report.html"
    done = _cli(tmp_path, db_url, "--html", str(target), PYTHONPATH=str(fake.parent))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install 'ordermon[report]'" in done.stderr and "Traceback" not in done.stderr
    assert not target.exists()


def test_html_and_json_together_is_a_usage_error(tmp_path: Path, db_url: str) -> None:
    done = _cli(tmp_path, db_url, "--html", str(tmp_path / "r.html"), "--json")
    assert done.returncode == 2 and "--html and --json" in done.stderr


class Browser:
    """One headless chromium page with the network off: every request that is not for the
    file itself is aborted and kept; console errors, page errors and dialogs are kept."""

    def __init__(self, playwright: Any, executable: str) -> None:
        self.browser = playwright.chromium.launch(executable_path=executable, headless=True)
        self.context = self.browser.new_context(
            offline=True, viewport={"width": 1200, "height": 900}
        )
        self.left: list[str] = []
        self.problems: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", self._request)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.left.append(route.request.url)
            route.abort()

    def _request(self, request: Any) -> None:
        if not request.url.startswith(("file:", "data:")):
            self.left.append(request.url)

    def open(self, page_file: Path) -> int:
        """Load ``page_file`` and wait until each of its charts is drawn; their number."""
        self.page.goto(page_file.as_uri())
        count = int(self.page.locator(".chart").count())
        _wait_for_svgs(self.page, count)
        return count

    def close(self) -> None:
        self.context.close()
        self.browser.close()


def _wait_for_svgs(page: Any, count: int) -> None:
    """Until every chart holds plotly's SVG. Polled from here: the page's policy forbids
    eval, which playwright's wait_for_function would need."""
    import time

    deadline = time.monotonic() + 30
    while page.evaluate("document.querySelectorAll('.chart svg.main-svg').length") < count:
        assert time.monotonic() < deadline, "the charts were not drawn within 30 s"
        time.sleep(0.1)


CHARTS_DRAWN = """() => Array.from(document.querySelectorAll(".chart")).map((c) => ({
  id: c.id,
  svg: c.querySelectorAll("svg.main-svg").length,
  // drawn marks: bars of some height, line segments, markers
  marks: Array.from(c.querySelectorAll(".trace .point path")).filter(
    (p) => p.getBBox().height > 0.5).length
    + Array.from(c.querySelectorAll(".trace path.js-line")).filter(
      (p) => (p.getAttribute("d") || "").length > 8).length
    + c.querySelectorAll(".trace path.point").length,
  legend: Array.from(c.querySelectorAll(".legendtext")).map((t) => t.textContent),
}))"""


def test_the_page_in_a_real_browser_offline(
    tmp_path: Path, db_url: str, conn: db.Connection
) -> None:
    """Opened from disk with no network: no console or page error, no request left the file,
    every chart drawn with marks, the hostile provider's name shown as text (no <img>)."""
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    made = recent_history(conn)
    target = tmp_path / "report.html"
    done = _cli(tmp_path, db_url, "--html", str(target))
    assert done.returncode == 0, done.stderr
    with sync_playwright() as playwright:
        browser = Browser(playwright, executable)
        try:
            page = browser.page
            assert browser.open(target) == 9  # 2 + one outcome chart per provider (2) + 5
            drawn = page.evaluate(CHARTS_DRAWN)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("ORDERMON_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["ORDERMON_SCREENSHOT_DIR"]) / "report.png")
            summary = page.locator("#summary").inner_text()
            slowest = page.locator("#slowest").inner_text()
            images = page.evaluate("document.querySelectorAll('img').length")
            legends = [t for chart in drawn for t in chart["legend"]]
        finally:
            browser.close()
    assert browser.problems == [] and browser.left == []
    for chart in drawn:
        assert chart["svg"] >= 1 and chart["marks"] > 0, chart
    assert HOSTILE in summary and images == 0
    assert f"{HOSTILE} {CLOSER}" in legends  # the refunds' legend: provider and currency
    assert str(made["slow"]) in slowest.splitlines()[1]
    assert shot.stat().st_size > 10_000


def test_the_empty_page_in_a_real_browser(tmp_path: Path, db_url: str) -> None:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    target = tmp_path / "report.html"
    done = _cli(tmp_path, db_url, "--html", str(target))
    assert done.returncode == 0, done.stderr
    with sync_playwright() as playwright:
        browser = Browser(playwright, executable)
        try:
            browser.page.goto(target.as_uri())
            said = browser.page.locator("#empty").inner_text()
        finally:
            browser.close()
    assert "nothing yet" in said
    assert browser.problems == [] and browser.left == []


def test_the_crontab_line_refreshes_the_page(
    tmp_path: Path, db_url: str, conn: db.Connection
) -> None:
    """crontab.example's (commented) report line, run as cron runs it (/bin/sh, an almost
    empty environment): it writes the page, 0644, and says nothing."""
    import re
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    [line] = [
        line[1:]
        for line in (root / "crontab.example").read_text().splitlines()
        if re.match(r"^#[*0-9/,-]+( [*0-9/,-]+){4} ", line) and " report " in line
    ]
    command = line.split(" ", 6)[6]
    recent_history(conn)
    config_path = write_config(tmp_path / "config.yaml", db_url, "http://unused")
    (tmp_path / "env").write_text("")
    (tmp_path / "www").mkdir()
    places = {
        "/etc/ordermon/env": str(tmp_path / "env"),
        "/etc/ordermon/config.yaml": str(config_path),
        "/var/www/ordermon/report.html": str(tmp_path / "www" / "report.html"),
        "/opt/ordermon/bin/ordermon": str(Path(sys.executable).parent / "ordermon"),
    }
    for shipped, here in places.items():
        assert shipped in command
        command = command.replace(shipped, here)
    cron_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    done = subprocess.run(
        ["/bin/sh", "-c", command], env=cron_env, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    page = tmp_path / "www" / "report.html"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644 and "Plotly.newPlot" in page.read_text()
