"""Issue 11, frictions 7-9: messages that say more, order numbers, `--version`."""

import http.server
import importlib.metadata
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import (
    KOD,
    SIFRE,
    TOKEN,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    order_row,
    provider_doc,
    run_cli,
    write_config,
)


def test_version_prints_the_installed_version() -> None:
    """`--version` and `-V` print `ordermon X.Y.Z` from the package metadata and exit 0."""
    expected = f"ordermon {importlib.metadata.version('ordermon')}"
    for flag in ("--version", "-V"):
        result = run_cli(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
        assert re.fullmatch(r"ordermon \d+\.\d+\.\d+\S*", result.stdout.strip())
        assert result.stderr == ""


def test_probe_names_the_credential_key_not_its_value(db_url: str, tmp_path: Path) -> None:
    """A refused probe names the config key to fix (znet: sifre), never the value."""
    with simulator.Simulator(token=TOKEN, kod=KOD, sifre=SIFRE) as sim:
        docs = [
            provider_doc("barakat", sim.url),
            provider_doc("znet", sim.url, sifre="wrong-sifre-value"),
            provider_doc("apstore", sim.url, token="wrong-token-value"),
            provider_doc("json", sim.url, headers={"Authorization": "Bearer wrong-json-value"}),
            provider_doc("internal", sim.url, token="wrong-internal-value"),
        ]
        config_path = tmp_path / "c.yaml"
        config_path.write_text(yaml.safe_dump(config_document(db_url, sim.url, providers=docs)))
        probed = run_cli("providers", "--probe", "--json", "--config", str(config_path))
        table = run_cli("providers", "--probe", "--config", str(config_path))
    assert probed.returncode == 1, probed.stderr
    probes = {row["name"]: row["probe"] for row in json.loads(probed.stdout)}
    assert probes["barakat"].startswith("reachable, credentials accepted")
    assert probes["znet"].startswith(
        "credentials refused: check providers[1].sifre and providers[1].kod "
        "(znet replied with an empty body, HTTP 200: unknown dealer code"
    )
    assert probes["apstore"].startswith(
        "credentials refused: check providers[2].token (apstore replied HTTP 401)"
    )
    assert probes["json"].startswith(
        "credentials refused: check providers[3].headers.Authorization (json replied HTTP 401"
    )
    assert probes["internal"].startswith(
        "credentials refused: check providers[4].token and providers[4].tenant_host "
        "(internal replied HTTP 401"
    )
    for output in (probed, table):
        text = output.stdout + output.stderr
        for secret in (SIFRE, TOKEN, "wrong-sifre-value", "wrong-token-value"):
            assert secret not in text
        assert "wrong-json-value" not in text and "wrong-internal-value" not in text


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_failed_health_ping_says_why_and_where_but_not_its_secret(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """Refused, 404, timed out, unknown host: the warning gives the reason and the host; the
    path (hc-ping.com/<uuid>), query and user info stay hidden."""
    secret = "6f1d7c2e-5b0a-4c1d-9e3f-secret-uuid"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()  # accepts connections (backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    garbage = socket.socket()  # answers every request with a line that is not HTTP
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(8)
    threading.Thread(target=_answer_garbage, args=(garbage,), daemon=True).start()
    closed, found, quiet = _free_port(), server.server_address[1], silent.getsockname()[1]
    babbler = garbage.getsockname()[1]
    cases = {
        f"http://127.0.0.1:{closed}/ping/{secret}": (
            f"http://127.0.0.1:{closed}/…",
            "connection refused",
        ),
        f"http://127.0.0.1:{found}/ping/{secret}?token={secret}": (
            f"http://127.0.0.1:{found}/…",
            "HTTP 404",
        ),
        f"http://127.0.0.1:{quiet}/{secret}": (
            f"http://127.0.0.1:{quiet}/…",
            "timed out after 0.5s",
        ),
        f"https://no-such-host.invalid/{secret}": (
            "https://no-such-host.invalid/…",
            "host name not found",
        ),
        f"http://127.0.0.1:{babbler}/ping/{secret}": (
            f"http://127.0.0.1:{babbler}/…",
            "reply is not HTTP",
        ),
        # a URL with user info is refused by the config (tests/test_config_report.py)
    }
    try:
        for url, (shown, reason) in cases.items():
            config_path = tmp_path / "c.yaml"
            document = config_document(
                db_url, sim.url, healthcheck={"ping_url": url, "timeout": "500ms"}
            )
            config_path.write_text(yaml.safe_dump(document))
            result = run_cli("sweep", "--config", str(config_path))
            assert result.returncode == 0, result.stderr
            for suffix in ("start", "0"):
                assert f"health ping {suffix} to {shown} failed: {reason}" in result.stderr
            assert secret not in result.stderr + result.stdout
            assert "user" not in result.stderr
    finally:
        server.shutdown()
        server.server_close()
        silent.close()
        garbage.close()


def _answer_garbage(listener: socket.socket) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        with client:
            client.recv(65536)
            client.sendall(b"NOT HTTP AT ALL\r\n\r\n")


def test_sweep_verbose_says_superseded_orders(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`sweep -v` has a line for an order an admin changed: while its check was in flight (the
    answer changes nothing), and before the sweep claimed it (not asked at all)."""
    config_path = write_config(tmp_path / "c.yaml", db_url, sim.url)
    before = add_order(conn, add_user(conn), "before-ref")
    sim.script("before-ref", "processing")
    first = run_cli("sweep", "-v", "--config", str(config_path))
    assert first.returncode == 0, first.stderr
    assert f"{before} alaya: processing -> processing" in first.stdout
    conn.execute("UPDATE product_orders SET status = 'approved' WHERE id = %(id)s", {"id": before})
    during = add_order(conn, add_user(conn), "during-ref")
    sim.script("during-ref", "slow:1.5:completed:PIN-9")
    time.sleep(1.2)  # the first order is due again (base_delay 1s)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "ordermon", "sweep", "-v", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")},
    )
    deadline = time.monotonic() + 20
    while sim.count("during-ref") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    conn.execute("UPDATE product_orders SET status = 'rejected' WHERE id = %(id)s", {"id": during})
    out, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 0, err
    assert sim.count("before-ref") == 1  # not asked again
    lines = out.splitlines()
    assert (
        f"{before} alaya: superseded, not asked (the order was decided or re-sent before its check)"
    ) in lines
    assert (
        f"{during} alaya: completed -> superseded (the order was decided or re-sent while it "
        "was checked, or another run took it over; this answer changed nothing)"
    ) in lines
    assert "PIN-9" not in out
    assert enrolment_of(conn, during)["state"] == "superseded"
    assert order_row(conn, during)["status"] == "rejected"


def test_check_dry_run_exits_1_when_the_answer_is_an_error(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`check --dry-run` shows an `error` answer and exits 1 (the provider could not be
    asked: an operational failure); a real answer still exits 0."""
    config_path = str(write_config(tmp_path / "c.yaml", db_url, sim.url))
    broken = add_order(conn, add_user(conn), "broken-ref")
    fine = add_order(conn, add_user(conn), "fine-ref")
    sim.script("broken-ref", "http500")
    sim.script("fine-ref", "processing")
    shown = run_cli("check", str(broken), "--dry-run", "--config", config_path)
    assert shown.returncode == 1, shown.stderr
    assert "error" in shown.stdout and "HTTP 500" in shown.stdout
    as_json = run_cli("check", str(broken), "--dry-run", "--json", "--config", config_path)
    assert as_json.returncode == 1, as_json.stderr
    assert json.loads(as_json.stdout)["outcome"] == "error"
    ok = run_cli("check", str(fine), "--dry-run", "--config", config_path)
    assert ok.returncode == 0, ok.stderr
    assert "processing" in ok.stdout
    assert conn.execute("SELECT count(*) AS n FROM ordermon_attempts").fetchone() == {"n": 0}


def test_a_masked_pin_does_not_tell_its_length(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """`check` masks every PIN with the same six marks, whatever its length: at most its last
    4 characters show (none of a PIN shorter than 8), in the table and in --json."""
    config_path = str(write_config(tmp_path / "c.yaml", db_url, sim.url))
    pins = {"short": "PIN-1", "medium": "ABCDEFGHCD34", "long": "Z" * 26 + "WXYZ"}
    masks = {}
    for name, pin in pins.items():
        order = add_order(conn, add_user(conn), f"ref-{name}")
        sim.script(f"ref-{name}", f"raw:OK|2|{pin}|teslim")
        table = run_cli(
            "check", str(order), "--dry-run", "--config", config_path, env={"COLUMNS": "1000"}
        )
        as_json = run_cli("check", str(order), "--dry-run", "--json", "--config", config_path)
        assert table.returncode == 0 and as_json.returncode == 0, table.stderr
        [row] = [line.split() for line in table.stdout.splitlines() if line.split()[:1] == ["pin"]]
        masks[name] = (row[1], json.loads(as_json.stdout)["pin"])
        assert pin not in table.stdout + as_json.stdout
    assert masks == {
        "short": ("••••••", "••••••"),
        "medium": ("••••••CD34", "••••••CD34"),
        "long": ("••••••WXYZ", "••••••WXYZ"),
    }


def test_a_sweep_names_the_refused_credential_keys(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """A sweep's line about refused credentials names the keys of that provider's kind."""
    with simulator.Simulator(kod=KOD, sifre=SIFRE) as sim:
        add_order(conn, add_user(conn), "z-1")
        document = config_document(db_url, sim.url, provider={"sifre": "wrong-sifre-value"})
        config_path = tmp_path / "c.yaml"
        config_path.write_text(yaml.safe_dump(document))
        result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "provider alaya refused ordermon's credentials on 1 request (" in line
    assert "check providers[0].sifre and providers[0].kod in the config" in line
    assert "wrong-sifre-value" not in line and SIFRE not in line


def _trickle(listener: socket.socket) -> None:
    """Answers each request with a status line one byte every 0.2 s, for ever."""

    def serve(client: socket.socket) -> None:
        with client:
            try:
                client.recv(65536)
                while True:
                    for byte in b"HTTP/1.1 200 OK\r\nX: ":
                        client.sendall(bytes([byte]))
                        time.sleep(0.2)
            except OSError:
                return

    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(client,), daemon=True).start()


def test_a_health_ping_is_bounded_as_a_whole_and_never_redirected(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    """A receiver that trickles its reply costs each ping its timeout, not a timeout per
    byte; a 302 is not followed (the ping's body could go anywhere)."""
    followed: list[str] = []

    class Target(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            followed.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    target_port = target.server_address[1]

    class Redirect(_NotFound):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target_port}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirect = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    slow = socket.socket()
    slow.bind(("127.0.0.1", 0))
    slow.listen(8)
    for server in (target, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=_trickle, args=(slow,), daemon=True).start()
    try:
        for port, reason in (
            (slow.getsockname()[1], "timed out after 1s"),
            (redirect.server_address[1], "HTTP 302 (a redirect, not followed"),
        ):
            config_path = tmp_path / "c.yaml"
            url = f"http://127.0.0.1:{port}/ping/token"
            document = config_document(
                db_url, sim.url, healthcheck={"ping_url": url, "timeout": "1s"}
            )
            config_path.write_text(yaml.safe_dump(document))
            started = time.monotonic()
            result = run_cli("sweep", "--config", str(config_path))
            took = time.monotonic() - started
            assert result.returncode == 0, result.stderr
            for suffix in ("start", "0"):
                shown = f"http://127.0.0.1:{port}/…"
                assert f"health ping {suffix} to {shown} failed: {reason}" in result.stderr
            assert took < 15, took  # two pings of at most 1 s each, and the sweep's own work
        assert followed == []
    finally:
        for server in (target, redirect):
            server.shutdown()
            server.server_close()
        slow.close()
