"""Issue 11, frictions 7-9: messages that say more, order numbers, `--version`."""

import importlib.metadata
import json
import re
from pathlib import Path

import yaml

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
