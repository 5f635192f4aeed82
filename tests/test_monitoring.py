"""What ships for Prometheus users: the alerting rules (checked and unit-tested by promtool),
the Grafana dashboard's structure, both naming only metrics a real sweep writes, and the
time-to-final quantiles (by hand on a known history, bounded to the hour, through indexes)."""

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ordermon import db
from ordermon.dev import simulator
from ordermon.ops import metrics
from tests.conftest import PROVIDER_ID, add_order, add_user, run_cli, write_config

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
RULES = MONITORING / "ordermon-alerts.yml"
RULE_TESTS = MONITORING / "ordermon-alerts.test.yml"
DASHBOARD = MONITORING / "grafana-ordermon.json"

# What in a PromQL expression is not a metric name.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL (or Grafana label_values) expression reads: strings, label
    matchers, ranges, grouping clauses, Grafana variables and function names taken away."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        after = text[match.end() :].lstrip()
        if match.group() in _KEYWORDS or after.startswith("("):
            continue
        if match.start() and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # a number's exponent or a duration's unit
        names.add(match.group())
    return names


def test_metric_names_are_read_from_promql() -> None:
    """The parser the checks below rely on: a name per metric, nothing else."""
    expr = (
        'time() - max by (instance) (ordermon_last_success_timestamp_seconds{instance=~"$x"})'
        ' > 300 and on (job) sum(rate(ordermon_run_checks{outcome="error"}[5m])) / 1e3'
        " + ordermon_orders_held offset 5m unless absent(foo_bar)"
    )
    assert metric_names(expr) == {
        "ordermon_last_success_timestamp_seconds",
        "ordermon_run_checks",
        "ordermon_orders_held",
        "foo_bar",
    }
    assert metric_names("label_values(ordermon_orders_waiting, provider)") == {
        "ordermon_orders_waiting"
    }


@pytest.fixture
def written(conn: db.Connection, sim: simulator.Simulator, db_url: str, tmp_path: Path) -> set[str]:
    """The metric names in the textfile of a real sweep (one final answer, one waiting order,
    one held order, one unwatched: every family has samples)."""
    user = add_user(conn)
    for reference, step in (("w0", "completed:P"), ("w1", "processing")):
        sim.script(reference, step)
        add_order(conn, user, reference)
    sim.script("w2", "failed")
    add_order(conn, None, "w2")  # no customer to refund: held
    add_order(conn, user, "w3", provider_id="nobody")
    textfile = tmp_path / "ordermon.prom"
    config_path = write_config(
        tmp_path / "c.yaml", db_url, sim.url, metrics={"textfile": str(textfile)}
    )
    result = run_cli("sweep", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    families = list(text_string_to_metric_families(textfile.read_text()))
    assert all(f.samples for f in families), [f.name for f in families if not f.samples]
    return {s.name for f in families for s in f.samples}


def _rule_exprs() -> dict[str, str]:
    document = yaml.safe_load(RULES.read_text())
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in document["groups"]
        for rule in group["rules"]
    }


def test_the_alert_rules_name_only_metrics_ordermon_writes(written: set[str]) -> None:
    """Every rule has `for:`, a severity, a summary and a description naming an ordermon
    command, and reads only metrics a real sweep wrote."""
    document = yaml.safe_load(RULES.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules}
    for needed in (
        "OrdermonNoSuccessfulSweep",
        "OrdermonProviderPaused",
        "OrdermonOrdersExpired",
        "OrdermonOrdersHeld",
        "OrdermonOrdersUnwatched",
        "OrdermonWebhookDeliveriesDead",
    ):
        assert needed in alerts
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule
        assert rule["annotations"]["summary"], rule
        assert "`ordermon " in rule["annotations"]["description"], rule
    for alert, expr in _rule_exprs().items():
        names = metric_names(expr)
        assert names, alert
        assert names <= written, (alert, names - written)


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, those inside rows too."""
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(_panels(panel.get("panels", [])))
    return found


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    return exprs + [v["query"]["query"] for v in dashboard["templating"]["list"]]


def test_the_dashboard_is_well_formed_and_names_only_metrics_ordermon_writes(
    written: set[str],
) -> None:
    """Valid JSON for Grafana 9+ with a Prometheus datasource input; every panel has a unique
    id, a place on the 24-column grid that overlaps no other, targets on that datasource; the
    queries read only metrics a real sweep wrote, and each metric is shown somewhere."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    panels = _panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and all(isinstance(grid[k], int) for k in grid)
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"panel {panel['id']} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel["id"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["id"]
            assert target["expr"] and target["refId"], panel["id"]
    shown: set[str] = set()
    for expr in _dashboard_exprs():
        names = metric_names(expr)
        assert names, expr
        assert names <= written, (expr, names - written)
        shown |= names
    assert shown == {n for n in written if n.startswith("ordermon_")} - {
        "ordermon_time_to_final_orders"  # the quantiles' sample size: for the curious
    }


def _promtool() -> str:
    """promtool's path; in CI (or with the test database given) its absence is a failure."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") or os.environ.get("ORDERMON_TEST_DSN"):
        pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
    pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    """`promtool check rules` accepts the file; `promtool test rules` shows each alert firing
    and not firing."""
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rule_exprs())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case["exp_alerts"]
    }
    assert fired == quiet == set(_rule_exprs())


def test_promtool_parses_the_dashboard_queries(tmp_path: Path) -> None:
    """The dashboard's PromQL (its variables given a value) parses: as recording rules in a
    scratch file, which `promtool check rules` reads with Prometheus's own parser."""
    promtool = _promtool()
    exprs = [e for e in _dashboard_exprs() if not e.startswith("label_values(")]
    rules = [
        {"record": f"ordermon:dashboard_{i}", "expr": re.sub(r"\$\w+", ".*", expr)}
        for i, expr in enumerate(exprs)
    ]
    scratch = tmp_path / "dashboard-rules.yml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(scratch)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def _history(conn: db.Connection, now: dt.datetime, orders: int) -> None:
    """Order g: one enrolment, its final answer 2g minutes before ``now``, g mod 7 + 1 minutes
    after its "sentAt"; every fifth answer is only 'processing' (not final)."""
    conn.execute(
        """INSERT INTO ordermon_enrolments (order_id, provider_id, reference, sent_at, state,
               attempts, next_check_at, deadline, finished_at)
           SELECT gen_random_uuid(), %(provider)s, 'r' || g,
                  %(now)s - make_interval(mins => 2 * g + g %% 7 + 1), 'done', 1,
                  %(now)s, %(now)s, %(now)s - make_interval(mins => 2 * g)
           FROM generate_series(1, %(orders)s) AS g""",
        {"provider": PROVIDER_ID, "now": now, "orders": orders},
    )
    conn.execute(
        """INSERT INTO ordermon_attempts (enrolment_id, order_id, provider_id, checked_at,
               outcome, applied)
           SELECT e.id, e.order_id, e.provider_id, e.finished_at,
                  CASE WHEN substr(e.reference, 2)::int %% 5 = 0 THEN 'processing'
                       ELSE 'completed' END,
                  CASE WHEN substr(e.reference, 2)::int %% 5 = 0 THEN 'processing'
                       ELSE 'completed' END
           FROM ordermon_enrolments e""",
        {},
    )
    conn.execute("ANALYZE")


def test_time_to_final_is_of_the_last_hour_by_hand(conn: db.Connection) -> None:
    """Quantiles as percentile_cont defines them, over the final answers of the hour only."""
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    _history(conn, now, 100)
    names = {PROVIDER_ID: "alaya", "other-id": "quiet"}
    # In the hour: g = 1..29 (2g minutes ago < 60), less g = 5, 10, ..., 25.
    values = sorted(float((g % 7 + 1) * 60) for g in range(1, 30) if g % 5)
    found = {f["provider"]: f for f in metrics.time_to_final(conn, now, names)}
    assert found["quiet"] == {"provider": "quiet", "n": 0, "q": []}
    assert found["alaya"]["n"] == len(values) == 24
    for q, value in zip(metrics.QUANTILES, found["alaya"]["q"], strict=True):
        position = q * (len(values) - 1)
        low = int(position)
        high = min(low + 1, len(values) - 1)
        expected = values[low] + (values[high] - values[low]) * (position - low)
        assert value == pytest.approx(expected)
    # By hand: minutes 1, 2 and 3 four times each, 4 to 7 three times: the median lies
    # between the 12th (3 min) and the 13th (4 min).
    assert found["alaya"]["q"][0] == 210.0
    later = {
        f["provider"]: f for f in metrics.time_to_final(conn, now + dt.timedelta(hours=5), names)
    }
    assert later["alaya"]["n"] == 0  # 2 * 100 minutes of history: none in that hour


def test_time_to_final_reads_the_hour_through_indexes(conn: db.Connection) -> None:
    """On a long history, the query reads the attempts by time (an index range, not the whole
    table) and each enrolment by its primary key."""
    now = dt.datetime.now(dt.UTC)
    _history(conn, now, 20000)  # 2 * 20000 minutes: four weeks of answers
    plan = "\n".join(
        row["QUERY PLAN"]
        for row in conn.execute(
            ("EXPLAIN " + metrics._TIME_TO_FINAL).encode(),
            {
                "quantiles": list(metrics.QUANTILES),
                "since": now - dt.timedelta(hours=1),
                "now": now,
                "final": metrics.FINAL,
            },
        )
    )
    assert "Seq Scan on ordermon_attempts" not in plan, plan
    assert "Seq Scan on ordermon_enrolments" not in plan, plan
    assert "ordermon_attempts_checked_at" in plan or "ordermon_attempts_provider" in plan, plan
    assert "ordermon_enrolments_pkey" in plan, plan


def test_unwatched_provider_ids_stay_few_and_escaped() -> None:
    """Past UNWATCHED_IDS unknown provider ids (the most orders first), the rest are summed
    under one series; ids come back exactly from the escaped text."""
    row = {"configured": False, "waiting": 0, "expired": 0, "held": 0, "paused_until": None}
    rows = [
        {**row, "provider_id": f'id"{i}\\', "name": f'id"{i}\\', "unwatched": 100 - i}
        for i in range(metrics.UNWATCHED_IDS + 5)
    ]
    rows.append({**row, "provider_id": "", "name": '(no "providerId")', "unwatched": 0})
    rows[3]["waiting"] = 2  # enrolments of an id no longer configured: a gauge series
    figures = {"providers": rows, "oldest_waiting_age_s": None, "dead_events": 0}
    text = metrics.render(figures, [], 1.0, None)
    unwatched = {
        s.labels["provider_id"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "ordermon_orders_unwatched"
        for s in f.samples
    }
    assert len(unwatched) == metrics.UNWATCHED_IDS + 1
    assert unwatched['id"0\\'] == 100 and unwatched[f'id"{metrics.UNWATCHED_IDS - 1}\\'] == 81
    assert unwatched[metrics.OTHER_IDS] == sum(100 - i for i in range(20, 25))
    waiting = [
        f for f in text_string_to_metric_families(text) if f.name == "ordermon_orders_waiting"
    ]
    assert {s.labels["provider"] for s in waiting[0].samples} == {'id"3\\'}
