"""Everything shown to a person: text from providers, the shop's rows and the operator is shown
as text (no markup, control characters escaped), PINs are masked, arguments echoed bounded."""

import datetime as dt
import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ordermon import cli, db
from ordermon.cli import render
from ordermon.cli import support as cli_support
from ordermon.dev import simulator
from ordermon.sweep import sweep
from tests.conftest import PROVIDER_ID, add_order, add_user, make_config, run_cli, write_config

# Markup Rich would interpret, an emoji code, an OSC title change ended by BEL, a screen clear.
HOSTILE = (
    "[/bold] teslim [bold]x[/] [link=https://evil.example]y[/link] :smile: "
    "\x1b]0;pwned\x07\x1b[2J end"
)
HOSTILE_SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J end"
WIDE = {"COLUMNS": "1000"}  # one line per table row, so substrings are not wrapped apart
ROOT = Path(__file__).parent.parent


def _assert_literal(output: str) -> None:
    for piece in ("[/bold] teslim", "[bold]x[/]", "[link=https://evil.example]y[/link]", ":smile:"):
        assert piece in output, (piece, output)
    assert HOSTILE_SHOWN in output
    for raw in ("\x1b", "\x07"):
        assert raw not in output


@pytest.fixture
def hostile(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> dict[str, Any]:
    """An order whose lastMessage, enrolment message and attempt message/excerpt hold hostile
    text; an expired dispatch of a provider id from the shop's rows that is hostile; a paused
    provider whose reason is hostile; a dead webhook delivery whose last error is hostile."""
    user = add_user(conn)
    order = add_order(conn, user, "h1")
    sweep.run(conn, make_config(db_url, sim.url), sweep.Options())
    conn.execute('UPDATE product_orders SET "lastMessage" = %(t)s', {"t": HOSTILE})
    conn.execute("UPDATE ordermon_attempts SET message = %(t)s, excerpt = %(t)s", {"t": HOSTILE})
    conn.execute("UPDATE ordermon_enrolments SET last_message = %(t)s", {"t": HOSTILE})
    sent = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    stranger = add_order(conn, user, "h2", provider_id=HOSTILE, sent_at=sent)
    conn.execute(
        """INSERT INTO ordermon_enrolments
               (order_id, provider_id, reference, sent_at, state, next_check_at, deadline,
                last_message)
           VALUES (%(o)s, %(p)s, 'h2', %(s)s, 'expired', %(s)s, %(s)s, %(m)s)""",
        {"o": stranger, "p": HOSTILE, "m": HOSTILE, "s": sent},
    )
    conn.execute(
        """INSERT INTO ordermon_provider_state (provider_id, failures, pauses, paused_until,
               reason)
           VALUES (%(p)s, 5, 1, now() + interval '1 hour', %(t)s)
           ON CONFLICT (provider_id) DO UPDATE SET failures = 5, pauses = 1,
               paused_until = excluded.paused_until, reason = excluded.reason""",
        {"p": PROVIDER_ID, "t": HOSTILE},
    )
    event = uuid.uuid4()
    conn.execute(
        """INSERT INTO ordermon_events (id, type, order_id, payload)
           VALUES (%(e)s, 'order.completed', %(o)s, '{}')""",
        {"e": event, "o": order},
    )
    conn.execute(
        """INSERT INTO ordermon_deliveries (event_id, webhook, state, attempts, next_attempt_at,
               last_error)
           VALUES (%(e)s, 'backend', 'dead', 12, now(), %(t)s)""",
        {"e": event, "t": HOSTILE},
    )
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url)
    return {"order": order, "config": str(config_path)}


def test_show_prints_outside_text_literally(hostile: dict[str, Any]) -> None:
    """`show` prints markup and control characters from the shop and providers as visible text."""
    result = run_cli("show", str(hostile["order"]), "--config", hostile["config"], env=WIDE)
    assert result.returncode == 0, result.stderr
    _assert_literal(result.stdout)
    picture = json.loads(
        run_cli("show", str(hostile["order"]), "--json", "--config", hostile["config"]).stdout
    )
    assert picture["order"]["last_message"] == HOSTILE
    assert picture["attempts"][0]["message"] == HOSTILE
    assert picture["enrolments"][0]["last_message"] == HOSTILE


def test_status_providers_and_events_print_outside_text_literally(
    hostile: dict[str, Any],
) -> None:
    """`status`, `providers` and `events list` print outside text as visible text."""
    status = run_cli("status", "--config", hostile["config"], env=WIDE)
    assert status.returncode == 3, status.stderr
    assert "Traceback" not in status.stderr
    _assert_literal(status.stdout)
    assert status.stdout.count("[/bold] teslim") >= 2  # the provider row and "needs a person"
    providers = run_cli("providers", "--config", hostile["config"], env=WIDE)
    assert providers.returncode == 0, providers.stderr
    _assert_literal(providers.stdout)
    events = run_cli("events", "list", "--config", hostile["config"], env=WIDE)
    assert events.returncode == 0, events.stderr
    _assert_literal(events.stdout)
    as_json = json.loads(run_cli("events", "list", "--json", "--config", hostile["config"]).stdout)
    assert as_json[0]["last_error"] == HOSTILE


def test_check_dry_run_masks_the_pin(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`check` shows only the PIN's last 4 characters, in the table and in --json, unless
    --show-pin."""
    order = add_order(conn, add_user(conn), "p1")
    sim.script("p1", "raw:OK|2|ABCDEFGHCD34|[/bold] teslim")
    config_path = str(write_config(tmp_path / "c.yaml", db_url, sim.url))
    table = run_cli("check", str(order), "--dry-run", "--config", config_path, env=WIDE)
    assert table.returncode == 0, table.stderr
    assert "ABCDEFGH" not in table.stdout and "CD34" in table.stdout
    assert "[/bold] teslim" in table.stdout
    as_json = run_cli("check", str(order), "--dry-run", "--json", "--config", config_path)
    data = json.loads(as_json.stdout)
    assert data["pin"].endswith("CD34") and "ABCDEFGH" not in as_json.stdout
    assert data["pin_masked"] is True
    shown = run_cli("check", str(order), "--dry-run", "--show-pin", "--config", config_path)
    assert "ABCDEFGHCD34" in shown.stdout
    shown_json = run_cli(
        "check", str(order), "--dry-run", "--json", "--show-pin", "--config", config_path
    )
    assert json.loads(shown_json.stdout)["pin"] == "ABCDEFGHCD34"
    recorded = run_cli("check", str(order), "--config", config_path, env=WIDE)
    assert recorded.returncode == 0, recorded.stderr
    assert "ABCDEFGH" not in recorded.stdout and "CD34" in recorded.stdout


@pytest.mark.parametrize(
    ("pin", "shown"),
    [
        ("ABCDEFGHCD34", "••••••CD34"),
        ("12345678", "••••••5678"),
        ("1234567", "••••••"),
        ("PIN-1", "••••••"),
        ("7", "••••••"),
        ("", ""),
    ],
)
def test_mask_pin(pin: str, shown: str) -> None:
    """A masked PIN is a fixed mask (it does not tell the PIN's length) and at most its last
    4 characters, never more than half of it."""
    assert render.mask_pin(pin) == shown


def test_check_never_prints_control_characters(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """A PIN or note holding terminal escapes or a lone surrogate is never printed raw by
    `check`, and `check --json` stays valid JSON."""
    reply = {
        "status": "OK",
        "data": [
            {
                "order_id": "b1",
                "status": "accept",
                "pin": "AB\u001b]0;pwned\u0007\u001b[2JCD34",
                "note": "[/bold] \ud800 \u009b31m",
            }
        ],
    }
    user = add_user(conn)
    order = add_order(conn, user, "b1", provider_id="barakat-id")
    with simulator.Simulator() as sim:
        sim.script("b1", "raw:" + json.dumps(reply))
        from tests.conftest import provider_doc

        config_path = write_config(
            tmp_path / "c.yaml", db_url, sim.url, providers=[provider_doc("barakat", sim.url)]
        )
        outputs = [
            run_cli("check", str(order), "--dry-run", *extra, "--config", str(config_path))
            for extra in ((), ("--show-pin",), ("--json",), ("--json", "--show-pin"))
        ]
    for result in outputs:
        assert result.returncode == 1, result.stderr  # an `error` answer: --dry-run exits 1
        assert "Traceback" not in result.stderr
        for raw in ("\x1b", "\x07", "\x9b"):
            assert raw not in result.stdout
    for result in outputs[2:]:
        json.loads(result.stdout)


def test_render_check_result_escapes_everything(capsys: pytest.CaptureFixture[str]) -> None:
    """The check table escapes control characters and lone surrogates in every field and
    never interprets markup."""
    render.check_result(
        {
            "order_id": "o",
            "provider": "p",
            "reference": "[bold]r\x1b[2J",
            "outcome": "completed",
            "pin": "AB\x1b]0;pwned\x07CD34",
            "message": "[/bold] \ud800 \x9b31m \x00 \x7f \u202e",
            "http_status": 200,
            "latency_ms": 3,
            "excerpt": '{"pin": "AB\x1b]0;pwned\x07CD34", "x": "[/]"}',
            "applied": None,
        },
        show_pin=True,
    )
    out = capsys.readouterr().out
    assert "[bold]r\\x1b[2J" in out and "[/bold] \\ud800 \\x9b31m \\x00 \\x7f \\u202e" in out
    assert "AB\\x1b]0;pwned\\x07CD34" in out
    for raw in ("\x1b", "\x07", "\x9b", "\x00", "\x7f", "\u202e"):
        assert raw not in out


def test_excerpt_never_shows_the_pin_when_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """With the PIN masked, the reply excerpt and message show the masked form too."""
    render.check_result(
        {
            "outcome": "completed",
            "pin": "SECRETPINCD34",
            "message": "your code SECRETPINCD34",
            "http_status": 200,
            "latency_ms": 3,
            "excerpt": "OK|2|SECRETPINCD34|x",
            "applied": None,
        },
        show_pin=False,
    )
    out = capsys.readouterr().out
    assert "SECRETPIN" not in out and "CD34" in out


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain İşlem ç ğ ı ş", "plain İşlem ç ğ ı ş"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bel\x07 nul\x00 del\x7f", "bel\\x07 nul\\x00 del\\x7f"),
        ("line\nbreak\rtab\t", "line\\nbreak\\rtab\\t"),
        ("csi\x9b c1\x85", "csi\\x9b c1\\x85"),
        ("lone \ud800 \udfff", "lone \\ud800 \\udfff"),
        ("bidi \u202e \u2066 sep \u2028", "bidi \\u202e \\u2066 sep \\u2028"),
        ("[bold]kept[/]", "[bold]kept[/]"),
    ],
)
def test_shown_escapes_control_characters_visibly(text: str, shown: str) -> None:
    """shown() escapes C0, C1, DEL, lone surrogates and bidi controls and leaves the rest."""
    assert render.shown(text) == shown


def test_print_json_survives_lone_surrogates_and_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--json output is exact JSON for any text: lone surrogates and C1 controls are escaped."""
    value = {"m": "a\ud800b\x9b\x1b[2J\u202eİş"}
    render.print_json(value)
    out = capsys.readouterr().out
    assert json.loads(out) == value
    for raw in ("\x1b", "\x9b", "\u202e"):
        assert raw not in out
    assert "İş" in out


def test_sweep_verbose_lines_escape_provider_text(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`sweep -v` prints a provider's message with its control characters escaped."""
    add_order(conn, add_user(conn), "v1")
    sim.script("v1", "raw:OK|1| - |" + HOSTILE)
    config_path = str(write_config(tmp_path / "c.yaml", db_url, sim.url))
    result = run_cli("sweep", "-v", "--config", config_path)
    assert result.returncode == 0, result.stderr
    assert "v1" not in result.stderr
    for raw in ("\x1b", "\x07"):
        assert raw not in result.stdout + result.stderr


def test_sweep_warnings_escape_provider_text(capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep's warnings on stderr escape control characters and stay one line each."""
    report = sweep.Report(1, {}, None, 0.1, problems=["provider x said \x1b[2J\nFAKE LINE"])
    cli._emit(report, as_json=False, verbose=False, quiet=False, log_format="text")
    err = capsys.readouterr().err
    assert err == "ordermon: warning: provider x said \\x1b[2J\\nFAKE LINE\n"


def test_log_lines_escape_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """A log line quoting outside text escapes its control characters."""
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        root.handlers = []
        cli_support.setup_logging(verbose=True)
        logging.getLogger("ordermon.test").warning("word %s", "a\x1b[2J\nb")
    finally:
        root.handlers = saved
    err = capsys.readouterr().err
    assert "word a\\x1b[2J\\nb" in err and "\x1b" not in err


@pytest.mark.parametrize("command", ["show", "check"])
def test_order_id_arguments_are_cut_and_escaped(command: str, tmp_path: Path) -> None:
    """A huge or escape-laden ORDER_ID is echoed cut and escaped, exit 2."""
    config_path = str(write_config(tmp_path / "c.yaml", "postgresql://127.0.0.1:9/x", "http://x"))
    for argument in ("x" * 4000, "\x1b]0;pwned\x07\x1b[2J"):
        result = run_cli(command, argument, "--config", config_path)
        assert result.returncode == 2, result.stderr
        assert "is not an order id" in result.stderr
        assert len(result.stderr) < 300 and "\x1b" not in result.stderr
        assert "Traceback" not in result.stderr


def test_provider_arguments_are_cut_and_escaped(tmp_path: Path, db_url: str) -> None:
    """A huge or escape-laden --provider is echoed cut and escaped, exit 2."""
    config_path = str(write_config(tmp_path / "c.yaml", db_url, "http://127.0.0.1:9"))
    for argument in ("y" * 4000, "\x1b]0;pwned\x07\x1b[2J"):
        for args in (("sweep",), ("requeue", "--expired")):
            result = run_cli(*args, "--provider", argument, "--config", config_path)
            assert result.returncode == 2, result.stderr
            assert "no such provider" in result.stderr
            assert len(result.stderr) < 300 and "\x1b" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("show", "x" * 100_000),
        ("sweep", "--limit", "9" * 100_000),
        ("sweep", "--provider", "p" * 5000),
    ],
)
def test_huge_arguments_are_refused_before_parsing(args: tuple[str, ...]) -> None:
    """An argument longer than a path is refused, exit 2, without being echoed."""
    result = run_cli(*args)
    assert result.returncode == 2
    assert "characters long" in result.stderr and len(result.stderr) < 300


def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, check=False, timeout=30
    )


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: no terminal")
def test_show_on_a_real_terminal(hostile: dict[str, Any], tmp_path: Path) -> None:
    """On a real terminal `show` prints `[/bold]` literally and no escape sequence from the data
    reaches the terminal (the title stays, the screen is not cleared)."""
    socket = f"ordermon-test-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "done"
    command = " ".join(
        shlex.quote(part)
        for part in (sys.executable, "-m", "ordermon", "show", str(hostile["order"]))
    )
    script = tmp_path / "run.sh"
    script.write_text(
        f"cd {shlex.quote(str(ROOT))}\nprintf 'BEFORE-MARK\\n'\n"
        f"{command} --config {shlex.quote(hostile['config'])}\n"
        f"echo EXIT=$? > {shlex.quote(str(done))}\nsleep 60\n"
    )
    started = _tmux(socket, "new-session", "-d", "-s", "t", "-x", "220", "-y", "60", f"sh {script}")
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.read_text().strip() == "EXIT=0"
        pane = _tmux(socket, "capture-pane", "-p", "-J", "-t", "t").stdout
        title = _tmux(socket, "display-message", "-p", "-t", "t", "#{pane_title}").stdout
    finally:
        _tmux(socket, "kill-server")
    assert "BEFORE-MARK" in pane  # the screen was not cleared by the data
    assert "[/bold] teslim" in pane and "\\x1b]0;pwned\\x07" in pane
    assert "pwned" not in title
