"""Issue 11, frictions 7-9: messages that say more, order numbers, `--version`."""

import http.server
import importlib.metadata
import json
import re
import socket
import threading
from pathlib import Path
from typing import Any

import yaml

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import KOD, SIFRE, TOKEN, config_document, provider_doc, run_cli


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
    closed, found, quiet = _free_port(), server.server_address[1], silent.getsockname()[1]
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
            "host not found (DNS)",
        ),
        # urllib sends no user info (it reads it as part of the host): only its hiding counts
        f"http://user:{secret}@127.0.0.1:{found}/x": (f"http://127.0.0.1:{found}/…", ""),
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
