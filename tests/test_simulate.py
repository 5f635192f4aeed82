"""`ordermon simulate`: every provider kind on one port, fates scripted or random, and a
`providers:` snippet that a config takes as it is; run as real processes."""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ordermon import db
from tests.conftest import add_order, add_user, config_document, order_row, run_cli

READY = "# listening"


class Simulate:
    """A running `ordermon simulate` and what it printed before it was ready."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ordermon", "simulate", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("ORDERMON_")},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.printed = self._until_ready(timeout=20)
        self.document: dict[str, Any] = yaml.safe_load(self.printed)

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _until_ready(self, timeout: float) -> str:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "".join(lines) + self.stop()[1]
            lines.append(line)
            if line.startswith(READY):
                return "".join(lines)

    def provider(self, kind: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [p for p in self.document["providers"] if p["kind"] == kind]
        assert len(found) == 1
        return found[0]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, str]:
        """Send ``signum``; the exit code and stderr once it has exited."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            _, err = self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.communicate()
        return self.process.returncode, err


@contextmanager
def simulate(*args: str) -> Iterator[Simulate]:
    running = Simulate(*args)
    try:
        yield running
    finally:
        running.stop(signal.SIGKILL if running.process.poll() is None else signal.SIGTERM)


def _json_state(sim: Simulate, reference: str) -> str:
    """What the simulated json provider says about ``reference``."""
    doc = sim.provider("json")
    url = doc["url"].replace("{reference}", reference)
    request = urllib.request.Request(url, headers=doc["headers"])  # noqa: S310 - 127.0.0.1
    with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310 - 127.0.0.1
        return str(json.load(reply)["result"]["state"])


def test_the_printed_snippet_drives_a_real_sweep_to_the_scripted_fates(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """The snippet pasted into a config as it is: a real `ordermon sweep` checks an order of
    every kind against the simulator, and each order reaches the fate scripted for it."""
    user = add_user(conn, balance="100.00")
    delivered_znet = add_order(conn, user, "1001", provider_id="znet")
    refused_barakat = add_order(conn, user, "1002", provider_id="barakat", amount="7.50")
    delivered_apstore = add_order(conn, user, "1003", provider_id="apstore")
    internal_order = add_order(conn, user, None, provider_id="internal")
    pending_json = add_order(conn, user, "1005", provider_id="json")
    with simulate(
        "--port",
        "0",
        "--fate",
        "delivered",
        "--order",
        "1002=failed",
        "--order",
        f"{internal_order}=failed",
        "--order",
        "1005=processing",
    ) as sim:
        for doc in sim.document["providers"]:  # the orders go to the snippet's providers
            conn.execute(
                'UPDATE product_orders SET "providerId" = %(id)s WHERE "providerId" = %(kind)s',
                {"id": doc["id"], "kind": doc["kind"]},
            )
        rest = config_document(db_url, "http://unused")
        del rest["providers"]
        config_path = tmp_path / "ordermon.yaml"
        config_path.write_text(yaml.safe_dump(rest) + sim.printed)
        swept = run_cli("sweep", "--config", str(config_path))
        code, err = sim.stop()
    assert swept.returncode == 0, swept.stderr
    assert code == 0, err
    assert "Traceback" not in err
    assert "znet 1001" in err and "barakat/apstore 1002" in err  # it says what it was asked
    for order in (delivered_znet, delivered_apstore):
        row = order_row(conn, order)
        assert row["status"] == "approved" and row["pinCode"]
    assert order_row(conn, refused_barakat)["status"] == "rejected"
    assert order_row(conn, internal_order)["status"] == "rejected"
    assert order_row(conn, pending_json)["status"] == "pending"
    balance = conn.execute("SELECT balance FROM users WHERE id = %(id)s", {"id": user}).fetchone()
    assert balance is not None and str(balance["balance"]) == "120.00"  # 7.50 + 12.50 refunded


def test_the_snippet_names_every_kind_once_with_its_port() -> None:
    """`--port 0` picks a free port and says which; one provider per kind, all pointing at
    it; the header says how to stop it."""
    with simulate("--port", "0") as sim:
        port = int(sim.printed.split("port ", 1)[1].split(")", 1)[0])
        kinds = [p["kind"] for p in sim.document["providers"]]
        assert sorted(kinds) == ["apstore", "barakat", "internal", "json", "znet"]
        for doc in sim.document["providers"]:
            assert f"http://127.0.0.1:{port}" in (doc.get("base_url") or doc["url"])
        assert _json_state(sim, "42") == "DELIVERED"  # the default fate
        code, err = sim.stop(signal.SIGINT)
    assert port > 0
    assert code == 0, err


def test_sigterm_exits_0_within_seconds() -> None:
    with simulate("--port", "0") as sim:
        started = time.monotonic()
        code, err = sim.stop(signal.SIGTERM)
    assert code == 0, err
    assert time.monotonic() - started < 3
    assert "Traceback" not in err


def test_a_port_in_use_exits_2_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("simulate", "--port", str(port), timeout=30)
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "--port 0" in result.stderr  # what to do instead
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_seed_gives_the_same_random_fates_again() -> None:
    """`--fate random --seed N`: each reference's fate depends only on N and the reference."""
    references = [str(7000 + i) for i in range(30)]

    def fates(*args: str) -> tuple[list[str], str]:
        with simulate("--port", "0", "--fate", "random", *args) as sim:
            return [_json_state(sim, ref) for ref in reversed(references)], sim.printed

    first, _ = fates("--seed", "7")
    again, _ = fates("--seed", "7")
    other, _ = fates("--seed", "8")
    unseeded, header = fates()
    assert first == again
    assert first != other
    assert {"DELIVERED", "CANCELLED"} <= set(first)
    seed = header.split("--seed ", 1)[1].split()[0]
    assert fates("--seed", seed)[0] == unseeded  # the seed it chose is printed, and reproduces


def test_delivery_after_n_checks() -> None:
    with simulate("--port", "0", "--fate", "refused", "--after-checks", "2") as sim:
        states = [_json_state(sim, "9001") for _ in range(4)]
        assert _json_state(sim, "9002") == "IN_PROGRESS"  # counted per order
    assert states == ["IN_PROGRESS", "IN_PROGRESS", "CANCELLED", "CANCELLED"]


def test_delivery_after_seconds() -> None:
    with simulate("--port", "0", "--after-seconds", "1.5") as sim:
        early = _json_state(sim, "9101")
        time.sleep(1.7)
        late = _json_state(sim, "9101")
    assert (early, late) == ("IN_PROGRESS", "DELIVERED")


def test_a_bad_script_exits_2_naming_the_option() -> None:
    result = run_cli("simulate", "--port", "0", "--order", "1001=teleported", timeout=30)
    assert result.returncode == 2
    assert "--order" in result.stderr and "teleported" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_cli("simulate", "--order", "no-equals-sign", timeout=30).returncode == 2
    assert run_cli("simulate", "--fate", "lost", timeout=30).returncode == 2


def test_options_it_cannot_honour_exit_2_at_once() -> None:
    """A repeat that would fill the memory, a delay that is not a number of seconds: usage
    errors at start, never a traceback (nor one per request later)."""
    for args in (
        ("--order", "a=processing*99999999999"),
        ("--order", "a=processing*20000"),
        ("--order", "a=hang:1e400"),
        ("--order", "a=slow:nan:completed:P"),
        ("--order", "a=hang:-1"),
        ("--latency", "nan"),
        ("--latency", "1e308"),
        ("--after-seconds", "inf"),
    ):
        started = time.monotonic()
        result = run_cli("simulate", "--port", "0", *args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert time.monotonic() - started < 20, args


def test_the_simulator_module_is_not_a_silent_command() -> None:
    """`python -m ordermon.dev.simulator` says to use `ordermon simulate` instead of exiting
    0 with nothing done."""
    result = subprocess.run(
        [sys.executable, "-m", "ordermon.dev.simulator"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "ordermon simulate" in result.stderr


def test_a_host_it_cannot_listen_on_exits_2() -> None:
    result = run_cli("simulate", "--host", "no-such-host.invalid", timeout=30)
    assert result.returncode == 2
    assert "cannot listen on no-such-host.invalid:8765" in result.stderr
    assert "Traceback" not in result.stderr


def test_delivery_distribution_options() -> None:
    """A wrong --delivery or --speed is a usage error; a right one is said in the header."""
    for args in (("--delivery", "gaussian"), ("--delivery", "bimodal", "--speed", "0")):
        result = run_cli("simulate", "--port", "0", *args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    with simulate(
        "--port", "0", "--delivery", "lognormal", "--speed", "1000", "--seed", "1"
    ) as sim:
        first = _json_state(sim, "9201")
        time.sleep(1.5)  # 1500 simulated seconds: past this order's draw (p99 is about 26 min)
        assert (first, _json_state(sim, "9201")) in {
            ("IN_PROGRESS", "DELIVERED"),
            ("DELIVERED", "DELIVERED"),
        }
        assert "lognormal" in sim.printed
