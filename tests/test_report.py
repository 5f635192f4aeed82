"""`ordermon report`: every figure against values computed by hand on a small known history
in a real PostgreSQL, and the command's output (JSON, plain text, usage errors)."""

import datetime as dt
import decimal
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from ordermon import db, errors
from ordermon.cli import report as cli_report
from ordermon.ops import report, report_sql
from tests.conftest import PROVIDER_ID, add_order, add_user, make_config, run_cli, write_config
from tests.test_tables import _on_terminal

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
OTHER = "other-provider-id"
BOX = set("│─┃━╭╮╰╯┏┓┗┛┡┩╇┼")


def t(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=dt.UTC)


def finished(
    conn: db.Connection,
    user: uuid.UUID,
    sent: dt.datetime,
    seconds: int,
    checks: int,
    outcome: str,
    *,
    number: int,
    provider_id: str = PROVIDER_ID,
    refund: tuple[str, str] | None = None,
    errors_first: int = 0,
) -> uuid.UUID:
    """An order finished ``seconds`` after ``sent``, with ``checks`` attempts one second
    apart ending at the final state (latency 100 ms, 200 ms, ...)."""
    state = {"completed": "done", "refunded": "done", "rejected": "done"}.get(outcome, outcome)
    status = {"completed": "approved", "refunded": "rejected", "rejected": "rejected"}
    amount, currency = refund or ("12.50", "USD")
    order_id = add_order(
        conn,
        user,
        f"ref-{number}",
        sent_at=sent,
        provider_id=provider_id,
        status=status.get(outcome, "pending"),
        external_status="done",
        amount=amount,
        orderNo=number,
        sellPriceCurrency=currency,
    )
    end = sent + dt.timedelta(seconds=seconds)
    enrolment = conn.execute(
        "INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,"
        " attempts, next_check_at, deadline, finished_at) VALUES (%(o)s, %(p)s, %(r)s, %(s)s,"
        " %(state)s, %(n)s, %(s)s, %(s)s, %(end)s) RETURNING id",
        {
            "o": order_id,
            "p": provider_id,
            "r": f"ref-{number}",
            "s": sent,
            "state": state,
            "n": checks,
            "end": end,
        },
    ).fetchone()
    assert enrolment is not None
    for j in range(checks):
        last = j == checks - 1
        conn.execute(
            "INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at,"
            " latency_ms, outcome) VALUES (%(e)s, %(o)s, %(p)s, %(at)s, %(ms)s, %(out)s)",
            {
                "e": enrolment["id"],
                "o": order_id,
                "p": provider_id,
                "at": end - dt.timedelta(seconds=checks - 1 - j),
                "ms": 100 * (j + 1),
                "out": "error" if j < errors_first else ("completed" if last else "processing"),
            },
        )
    if outcome == "refunded":
        conn.execute(
            "INSERT INTO ordermon_refunds (order_id, user_id, amount, wallet_transaction_id,"
            " enrolment_id, refunded_at) VALUES (%(o)s, %(u)s, %(a)s, %(w)s, %(e)s, %(at)s)",
            {
                "o": order_id,
                "u": user,
                "a": decimal.Decimal(amount),
                "w": uuid.uuid4(),
                "e": enrolment["id"],
                "at": end,
            },
        )
    return order_id


def waiting(conn: db.Connection, user: uuid.UUID, sent: dt.datetime, number: int) -> None:
    order_id = add_order(conn, user, f"ref-{number}", sent_at=sent, orderNo=number)
    conn.execute(
        "INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at,"
        " next_check_at, deadline) VALUES (%(o)s, %(p)s, %(r)s, %(s)s, %(s)s, %(s)s)",
        {"o": order_id, "p": PROVIDER_ID, "r": f"ref-{number}", "s": sent},
    )


def history(conn: db.Connection) -> dict[str, uuid.UUID]:
    user = add_user(conn)
    made = {
        "A1": finished(conn, user, t(1, 10), 5, 1, "completed", number=1),
        "A2": finished(conn, user, t(1, 11), 20, 2, "completed", number=2),
        "A3": finished(conn, user, t(2, 9), 45, 3, "refunded", number=3),
        "A4": finished(conn, user, t(2, 10), 100, 2, "rejected", number=4),
        "A5": finished(conn, user, t(2, 11), 4000, 5, "held", number=5, errors_first=2),
        "A6": finished(conn, user, t(3, 8), 700, 4, "expired", number=6),
        "A8": finished(conn, user, t(2, 12), 10, 1, "refunded", number=8, refund=("3.25", "USD")),
        "A9": finished(
            conn, user, t(3, 8, 30), 60, 1, "refunded", number=9, refund=("5.00", "EUR")
        ),
        # Before the period: left out of every figure.
        "A7": finished(
            conn, user, dt.datetime(2026, 11, 20, tzinfo=dt.UTC), 30, 9, "completed", number=7
        ),
        # Another provider's (not configured): only without --provider.
        "O1": finished(
            conn,
            user,
            t(2, 9),
            50,
            1,
            "refunded",
            number=11,
            provider_id=OTHER,
            refund=("7.00", "EUR"),
        ),
    }
    for number, age in enumerate((100, 200, 400, 1000, 7200, 2 * 86400), 20):
        waiting(conn, user, NOW - dt.timedelta(seconds=age), number)
    return made


def test_every_figure_against_hand_computed_values(conn: db.Connection) -> None:
    made = history(conn)
    cfg = make_config("postgresql://unused", "http://unused")
    figures = report.gather(conn, cfg, NOW, dt.timedelta(days=7), ("alaya",))
    [p] = figures["providers"]
    assert (p["name"], p["finished"]) == ("alaya", 8)
    # seconds sorted: 5 10 20 45 60 100 700 4000; percentile_cont at (n-1)*q
    assert p["time_to_final_s"] == {"p50": 52.5, "p90": 1690.0, "p99": 3769.0}
    assert [b["count"] for b in p["histogram"]] == [1, 2, 1, 2, 0, 0, 1, 0, 1]
    assert [b["bucket"] for b in p["histogram"]][:2] == ["0s-10s", "10s-30s"]
    assert p["histogram"][-1]["bucket"] == "1h+"
    # checks 1 2 3 2 5 4 1 1: mean 19/8; sorted 1 1 1 2 2 3 4 5, p90 at 6.3
    assert p["checks_per_order"] == {"mean": 2.38, "p90": 4.3}
    zero = dict.fromkeys(report.OUTCOMES, 0)
    assert p["outcomes_per_day"] == [
        {"day": "2026-12-01", **zero, "completed": 2},
        {"day": "2026-12-02", **zero, "refunded": 2, "rejected": 1, "held": 1},
        {"day": "2026-12-03", **zero, "expired": 1, "refunded": 1},
    ]
    assert p["refunds_per_day"] == [
        {"day": "2026-12-02", "currency": "USD", "count": 2, "amount": "15.75"},
        {"day": "2026-12-03", "currency": "EUR", "count": 1, "amount": "5.00"},
    ]
    assert p["refund_totals"] == [
        {"currency": "EUR", "count": 1, "amount": "5.00"},
        {"currency": "USD", "count": 2, "amount": "15.75"},
    ]
    hours = {h["hour"]: h for h in p["hourly"]}
    assert len(hours) == 6 and sum(h["checks"] for h in p["hourly"]) == 19
    # 12:00 on the 2nd: A5's five checks (100..500 ms, two errors) and A8's one (100 ms)
    assert hours["2026-12-02T12:00:00+00:00"] == {
        "hour": "2026-12-02T12:00:00+00:00",
        "checks": 6,
        "errors": 2,
        "error_rate": 0.3333,
        "latency_p50_ms": 250.0,
        "latency_p95_ms": 475.0,
    }
    assert [b["count"] for b in p["backlog"]] == [2, 1, 1, 1, 0, 1]
    assert p["waiting"] == 6
    slowest = [(o["order_no"], o["time_to_final_s"]) for o in figures["slowest"]]
    assert slowest == [(5, 4000), (6, 700), (4, 100), (9, 60), (3, 45), (2, 20), (8, 10), (1, 5)]
    assert figures["slowest"][0]["order_id"] == str(made["A5"])
    assert figures["slowest"][0]["outcome"] == "held"
    checked = [(o["order_no"], o["checks"]) for o in figures["most_checked"]]
    assert checked == [(5, 5), (6, 4), (3, 3), (4, 2), (2, 2), (9, 1), (8, 1), (1, 1)]
    assert figures["since"] == "2026-11-26T12:00:00+00:00" and not figures["empty"]


def test_without_provider_every_provider_and_lists_of_ten(conn: db.Connection) -> None:
    history(conn)
    user = add_user(conn)
    for n in range(5):
        finished(conn, user, t(3, 9), 1, 1, "completed", number=100 + n)
    cfg = make_config("postgresql://unused", "http://unused")
    figures = report.gather(conn, cfg, NOW)
    assert [p["provider_id"] for p in figures["providers"]] == [PROVIDER_ID, OTHER]
    other = figures["providers"][1]
    assert other["configured"] is False and other["finished"] == 1
    assert other["refunds_per_day"] == [
        {"day": "2026-12-02", "currency": "EUR", "count": 1, "amount": "7.00"}
    ]
    assert len(figures["slowest"]) == 10 and len(figures["most_checked"]) == 10
    assert figures["slowest"][4]["order_no"] == 11  # O1, 50 s, between A9 and A3


def test_a_shorter_period_leaves_older_orders_out(conn: db.Connection) -> None:
    history(conn)
    cfg = make_config("postgresql://unused", "http://unused")
    figures = report.gather(conn, cfg, NOW, dt.timedelta(hours=6), ("alaya",))
    [p] = figures["providers"]
    assert p["finished"] == 2  # A6 and A9 on the 3rd
    assert p["time_to_final_s"]["p50"] == 380.0


@pytest.mark.parametrize("value", ["abc", "0s", "400d", "-5d", "1e999d"])
def test_bad_since_is_a_usage_error(value: str) -> None:
    with pytest.raises(errors.UsageError):
        report.period(value)


def test_period_default_and_parsed() -> None:
    assert report.period(None) == dt.timedelta(days=7)
    assert report.period("36h") == dt.timedelta(hours=36)
    assert report.period("366d") == dt.timedelta(days=366)


def test_sparkline_and_bar() -> None:
    assert cli_report.sparkline([0, 1, 2, 7, None]) == "▁▂▃█ "
    assert cli_report.sparkline([0, 0]) == "▁▁"
    assert cli_report.bar(10, 10, width=4) == "████"
    assert cli_report.bar(1, 16, width=4) == "▎"
    assert cli_report.bar(0, 10) == ""


def _cli(tmp_path: Path, db_url: str, *args: str, **overrides: Any) -> Any:
    path = write_config(tmp_path / "c.yaml", db_url, "http://unused", **overrides)
    return run_cli("report", "--config", str(path), *args)


def _recent(conn: db.Connection) -> uuid.UUID:
    """An order finished an hour ago (the command reads the real clock)."""
    user = add_user(conn)
    now = dt.datetime.now(dt.UTC)
    waiting(conn, user, now - dt.timedelta(seconds=100), 50)
    return finished(conn, user, now - dt.timedelta(hours=1), 30, 3, "refunded", number=42)


def test_json_parses_with_offsets(tmp_path: Path, db_url: str, conn: db.Connection) -> None:
    order_id = _recent(conn)
    done = _cli(tmp_path, db_url, "--json", timezone="Europe/Istanbul")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    [p] = figures["providers"]
    assert p["finished"] == 1 and p["time_to_final_s"]["p50"] == 30.0
    assert figures["now"].endswith("+03:00") and p["hourly"][0]["hour"].endswith("+03:00")
    assert figures["slowest"][0]["order_id"] == str(order_id)
    assert p["refund_totals"] == [{"currency": "USD", "count": 1, "amount": "12.50"}]


def test_piped_output_is_plain_and_complete(
    tmp_path: Path, db_url: str, conn: db.Connection
) -> None:
    order_id = _recent(conn)
    done = _cli(tmp_path, db_url, "--provider", "alaya")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert not BOX & set(out) and "█" not in out and "▁" not in out
    for words in (
        "time from sentAt",
        "alaya: outcomes per day",
        "alaya: per hour",
        "alaya: refunds per day",
        "alaya: backlog now by age",
        str(order_id),
        "12.50",
        "slowest orders",
        "most-checked orders",
    ):
        assert words in out, out


@pytest.mark.parametrize(
    "args", [("--since", "abc"), ("--since", "0s"), ("--since", "367d"), ("--provider", "nope")]
)
def test_usage_errors_exit_2(tmp_path: Path, db_url: str, args: tuple[str, ...]) -> None:
    done = _cli(tmp_path, db_url, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and args[0] in done.stderr


def test_empty_database_says_nothing_yet(tmp_path: Path, db_url: str) -> None:
    done = _cli(tmp_path, db_url)
    assert done.returncode == 0, done.stderr
    assert "nothing yet" in done.stdout
    assert json.loads(_cli(tmp_path, db_url, "--json").stdout)["empty"] is True


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: no terminal")
def test_on_a_terminal_boxes_bars_and_sparklines(
    tmp_path: Path, db_url: str, conn: db.Connection
) -> None:
    _recent(conn)
    path = write_config(tmp_path / "c.yaml", db_url, "http://unused")
    pane = _on_terminal(tmp_path, "report", "--config", str(path), columns=100)
    assert BOX & set(pane), pane
    assert "█" * 20 in pane  # the fullest histogram bucket's bar
    assert "alaya: per hour" in pane and "latency p95 ms" in pane
    assert all(len(line) <= 100 for line in pane.splitlines())


def test_hourly_series_fills_the_hours_without_checks() -> None:
    hours = [
        {"hour": "2026-12-02T10:00:00+03:00", "checks": 4},
        {"hour": "2026-12-02T13:00:00+03:00", "checks": 2},
    ]
    assert cli_report.hourly_series(hours, "checks", 0) == [4, 0, 0, 2]
    assert cli_report.hourly_series(hours, "checks", None) == [4, None, None, 2]
    assert cli_report.hourly_series([], "checks", 0) == []


def test_the_hourly_figures_read_attempts_by_time(conn: db.Connection) -> None:
    """The checks of the period are found by ordermon_attempts_checked_at, not by reading
    every attempt ever made (seq scans priced out so the small table does not hide it)."""
    params = {"since": NOW - dt.timedelta(days=7), "now": NOW, "tz": "UTC", "providers": None}
    conn.execute("SET enable_seqscan = off")
    plan = conn.execute(("EXPLAIN " + report_sql.HOURLY).encode(), params).fetchall()
    text = "\n".join(str(next(iter(row.values()))) for row in plan)
    assert "ordermon_attempts_checked_at" in text, text


def test_days_and_hours_are_the_configured_zones(conn: db.Connection) -> None:
    """21:30 UTC on the 1st is 00:30 on the 2nd in Istanbul (+03:00): its day and hour."""
    user = add_user(conn)
    finished(conn, user, t(1, 21, 29), 60, 1, "refunded", number=1, refund=("2.00", "TRY"))
    cfg = make_config("postgresql://unused", "http://unused", timezone="Europe/Istanbul")
    [p] = report.gather(conn, cfg, NOW)["providers"]
    assert [d["day"] for d in p["outcomes_per_day"]] == ["2026-12-02"]
    assert [r["day"] for r in p["refunds_per_day"]] == ["2026-12-02"]
    assert [h["hour"] for h in p["hourly"]] == ["2026-12-02T00:00:00+03:00"]
