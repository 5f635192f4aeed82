"""Staying polite and calm: batching, rate limits, Retry-After, pauses, credential problems,
oversized and endless replies."""

import dataclasses
import datetime as dt
import json
import socket
import time
from pathlib import Path
from typing import Any

import yaml

from ordermon import db, providers
from ordermon.config import providers as provider_config
from ordermon.dev import simulator
from ordermon.providers import base
from ordermon.sweep import sweep
from tests.conftest import (
    TOKEN,
    FakeClock,
    add_order,
    add_user,
    config_document,
    enrolment_of,
    order_row,
    provider_doc,
    providers_config,
    run_cli,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_batching_1000_orders_in_20_requests(conn: db.Connection, db_url: str) -> None:
    """1,000 due barakat orders are checked in at most 20 requests with batch_size 50."""
    with simulator.Simulator(token=TOKEN, default=("completed:P",)) as sim:
        user = add_user(conn)
        with conn.cursor() as cursor:
            cursor.executemany(
                """INSERT INTO product_orders (id, status, "userId", "providerId",
                       "externalStatus", "sentAt", provider_referans)
                   VALUES (gen_random_uuid(), 'pending', %(user)s, 'barakat-id', 'sent',
                           now() - interval '1 minute', %(ref)s)""",
                [{"user": user, "ref": str(100000 + i)} for i in range(1000)],
            )
        cfg = providers_config(db_url, provider_doc("barakat", sim.url, batch_size=50))
        report = sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
        assert report.counts["completed"] == 1000
        assert sim.count_kind("barakat") <= 20
        assert max(sim.counts().values()) == 1


def test_rate_limit_holds_at_send_time(conn: db.Connection, db_url: str) -> None:
    """A provider limited to 20/s never gets more than that in any second of a sweep."""
    with simulator.Simulator(kod="4711", sifre="s3cr3t-sifre-value") as sim:
        user = add_user(conn)
        for i in range(70):
            add_order(conn, user, f"r{i}", provider_id="znet-id")
        cfg = providers_config(
            db_url,
            provider_doc("znet", sim.url, rate_limit="20/s"),
            sweep={"concurrency": 16, "batch_size": 100, "lease": "60s"},
        )
        started = time.monotonic()
        report = sweep.run(conn, cfg, sweep.Options(), clock=FakeClock())
        assert report.counts["processing"] == 70
        assert time.monotonic() - started >= 3.0  # 70 requests at 20/s take 3.5 s at least
        times = sorted(r.at for r in sim.requests)
        busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        assert busiest <= 22  # 20 per second, plus a generous bound for timing at the server


def test_retry_after_holds_the_provider(conn: db.Connection, db_url: str) -> None:
    """A 429 with Retry-After: the affected orders wait at least that long without spending
    attempts, and nothing more is sent to that provider until then, in this sweep or the next."""
    clock = FakeClock()
    with simulator.Simulator(kod="4711", sifre="s3cr3t-sifre-value", default=("429:120",)) as sim:
        user = add_user(conn)
        orders = [add_order(conn, user, f"r{i}", provider_id="znet-id") for i in range(6)]
        cfg = providers_config(db_url, provider_doc("znet", sim.url, max_concurrency=1))
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        assert len(sim.requests) == 1
        for order in orders:
            enrolment = enrolment_of(conn, order)
            assert enrolment["attempts"] == 0
            assert enrolment["next_check_at"] >= clock.now + dt.timedelta(seconds=115)
        clock.advance(60)
        conn.execute("UPDATE ordermon_enrolments SET next_check_at = %(now)s", {"now": clock.now})
        assert sweep.run(conn, cfg, sweep.Options(), clock=clock).counts["claimed"] == 0
        assert len(sim.requests) == 1
        clock.advance(61)
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        assert len(sim.requests) >= 2


def test_provider_down_for_three_hours(conn: db.Connection, db_url: str) -> None:
    """Connection refused for three simulated hours: attempts kept, nobody expired before the
    real deadline, nobody refunded; the first sweep after it is back finalises every order."""
    clock = FakeClock()
    port = _free_port()
    user = add_user(conn, "0")
    orders = {
        f"r{i}": add_order(conn, user, f"r{i}", provider_id="znet-id", sent_at=clock.now)
        for i in range(12)
    }
    doc = provider_doc(
        "znet",
        f"http://127.0.0.1:{port}",
        pause={"after_failures": 3, "cooldown": "1m", "max_cooldown": "30m"},
    )
    cfg = providers_config(
        db_url,
        doc,
        schedule={
            "first_check_after": "0s",
            "base_delay": "30s",
            "max_delay": "10m",
            "jitter": 0,
            "give_up_after": "4h",
        },
    )
    for _ in range(180):
        sweep.run(conn, cfg, sweep.Options(), clock=clock)
        clock.advance(60)
    states = {
        r["state"]: r["n"]
        for r in conn.execute("SELECT state, count(*) AS n FROM ordermon_enrolments GROUP BY state")
    }
    assert states == {"waiting": 12}
    attempts = {r["attempts"] for r in conn.execute("SELECT attempts FROM ordermon_enrolments")}
    assert attempts == {0}
    calls = conn.execute("SELECT count(*) AS n FROM ordermon_attempts").fetchone()
    assert calls is not None and calls["n"] < 40  # paused, probed now and then, not hammered
    pause = conn.execute("SELECT pauses, paused_until FROM ordermon_provider_state").fetchone()
    assert pause is not None and pause["pauses"] >= 5
    assert conn.execute("SELECT count(*) AS n FROM wallet_transactions").fetchone() == {"n": 0}
    with simulator.Simulator(port=port, kod="4711", sifre="s3cr3t-sifre-value") as sim:
        for index, reference in enumerate(orders):
            sim.script(reference, "failed" if index % 4 == 0 else f"completed:PIN-{index}")
        clock.advance(31 * 60)  # past the longest cool-down
        report = sweep.run(conn, cfg, sweep.Options(), clock=clock)
    assert report.counts["completed"] == 9 and report.counts["failed"] == 3
    assert {order_row(conn, o)["status"] for o in orders.values()} == {"approved", "rejected"}
    assert conn.execute("SELECT count(*) AS n FROM wallet_transactions").fetchone() == {"n": 3}
    state = conn.execute("SELECT pauses, paused_until FROM ordermon_provider_state").fetchone()
    assert state == {"pauses": 0, "paused_until": None}


def test_credential_problem_is_one_line_per_sweep(
    conn: db.Connection, db_url: str, tmp_path: Path
) -> None:
    """A wrong token: one warning line per sweep, exit 0, orders retried, not failed."""
    with simulator.Simulator(token="the-right-token") as sim:
        user = add_user(conn)
        orders = [add_order(conn, user, str(5000 + i), provider_id="barakat-id") for i in range(5)]
        document = config_document(
            db_url, sim.url, providers=[provider_doc("barakat", sim.url, batch_size=2)]
        )
        config_path = tmp_path / "c.yaml"
        config_path.write_text(yaml.safe_dump(document))
        result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "provider barakat refused ordermon's credentials on 3 requests" in lines[0]
    assert TOKEN not in result.stderr
    for order in orders:
        assert enrolment_of(conn, order)["attempts"] == 0
        assert order_row(conn, order)["status"] == "pending"


def _adapter(sim_url: str, **changes: Any) -> base.Provider:
    cfg = providers_config("postgresql://unused", provider_doc("znet", sim_url))
    provider: provider_config.ProviderConfig = dataclasses.replace(cfg.providers[0], **changes)
    return providers.build(provider)


def test_oversized_reply_is_cut_off() -> None:
    """A 10 MB reply is cut at max_reply_bytes and recorded as an error."""
    with simulator.Simulator() as sim:
        sim.script("big", "huge")
        started = time.monotonic()
        check = _adapter(sim.url, max_reply_bytes=65536).check(["big"])["big"]
    assert check.answer.outcome is base.Outcome.ERROR
    assert "too large" in (check.answer.message or "")
    assert len(check.excerpt or "") <= 300
    assert time.monotonic() - started < 5


def test_endless_reply_hits_the_timeout() -> None:
    """A reply that never ends is abandoned at the timeout."""
    with simulator.Simulator() as sim:
        sim.script("forever", "endless")
        started = time.monotonic()
        check = _adapter(sim.url, timeout=1.5, max_reply_bytes=10**9).check(["forever"])["forever"]
        elapsed = time.monotonic() - started
    assert check.answer.outcome is base.Outcome.ERROR
    assert check.trouble is base.Trouble.TRANSPORT
    assert 1.4 <= elapsed < 5


def test_providers_command(conn: db.Connection, db_url: str, tmp_path: Path) -> None:
    """`ordermon providers` lists kind, address, limits and state without secrets; --probe
    tells good credentials from bad."""
    with simulator.Simulator(token=TOKEN, kod="4711", sifre="s3cr3t-sifre-value") as sim:
        docs = [provider_doc(kind, sim.url) for kind in ("znet", "barakat", "internal", "json")]
        docs.append(provider_doc("apstore", sim.url, token="wrong-token-value", id="ap-id"))
        docs[1]["rate_limit"] = "300/m"
        config_path = tmp_path / "c.yaml"
        config_path.write_text(yaml.safe_dump(config_document(db_url, sim.url, providers=docs)))
        listing = run_cli("providers", "--json", "--config", str(config_path))
        probed = run_cli("providers", "--probe", "--json", "--config", str(config_path))
        table = run_cli("providers", "--config", str(config_path))
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["barakat"]["limits"]["rate_limit_per_s"] == 5.0
    assert rows["znet"]["base_url"] == sim.url and rows["znet"]["state"] == "ok"
    assert probed.returncode == 1  # one provider's credentials are wrong
    probes = {row["name"]: row["probe_ok"] for row in json.loads(probed.stdout)}
    assert probes == {
        "znet": True,
        "barakat": True,
        "internal": True,
        "json": True,
        "apstore": False,
    }
    assert table.returncode == 0 and "barakat" in table.stdout
    for output in (listing, probed, table):
        text = output.stdout + output.stderr
        assert TOKEN not in text and "s3cr3t-sifre-value" not in text
        assert "wrong-token-value" not in text
