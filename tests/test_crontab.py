"""The lines of crontab.example work as cron runs them: /bin/sh, an almost empty environment,
the secrets read from the env file the comments describe."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from ordermon import db
from ordermon.dev import simulator
from tests.conftest import SIFRE, add_order, add_user, config_document, order_row

ROOT = Path(__file__).parent.parent


def _cron_commands() -> list[str]:
    """Each job's command: the line without its five time fields and its user field."""
    lines = (ROOT / "crontab.example").read_text().splitlines()
    jobs = [line for line in lines if re.match(r"^[*0-9/,-]+( [*0-9/,-]+){4} ", line)]
    return [line.split(" ", 6)[6] for line in jobs]


def test_the_example_lines_sweep_with_secrets_from_the_env_file(
    conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path
) -> None:
    document = config_document(db_url, sim.url)
    document["providers"][0]["sifre"] = "${ALAYA_SIFRE}"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
    (tmp_path / "env").write_text(f"ALAYA_SIFRE='{SIFRE}'\n")
    ordermon = Path(sys.executable).parent / "ordermon"
    places = {
        "/etc/ordermon/env": str(tmp_path / "env"),
        "/etc/ordermon/config.yaml": str(tmp_path / "config.yaml"),
        "/var/log/ordermon/sweep.log": str(tmp_path / "sweep.log"),
        "/run/lock/ordermon.lock": str(tmp_path / "ordermon.lock"),
        "/opt/ordermon/bin/ordermon": str(ordermon),
    }
    sweep_line, status_line = _cron_commands()
    for shipped, here in places.items():
        assert shipped in sweep_line + status_line or shipped == "/etc/ordermon/env"
        sweep_line = sweep_line.replace(shipped, here)
        status_line = status_line.replace(shipped, here)
    order = add_order(conn, add_user(conn), "C-1")
    sim.script("C-1", "completed:PIN-C1")
    cron_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    assert "ALAYA_SIFRE" not in cron_env

    swept = subprocess.run(
        ["/bin/sh", "-c", sweep_line], env=cron_env, capture_output=True, text=True, timeout=120
    )
    assert (swept.returncode, swept.stdout, swept.stderr) == (0, "", "")
    assert (tmp_path / "sweep.log").read_text() == ""  # nothing to say: cron mails nothing
    assert order_row(conn, order)["status"] == "approved"

    status = subprocess.run(
        ["/bin/sh", "-c", status_line], env=cron_env, capture_output=True, text=True, timeout=120
    )
    assert (status.returncode, status.stdout) == (0, ""), status.stderr

    # Without the env file the job fails loudly (sh says so, cron mails it), never silently.
    os.remove(tmp_path / "env")
    missing = subprocess.run(
        ["/bin/sh", "-c", sweep_line], env=cron_env, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode != 0 and "env" in missing.stderr
