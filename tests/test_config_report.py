"""One run reports every config error: each with its key, exit 2, no traceback, the list
bounded; duplicate YAML keys are errors; the shipped example loads with its two secrets."""

import re
import time
from pathlib import Path
from typing import Any

import pytest

from ordermon import config, errors
from ordermon.config import validate
from tests.conftest import config_document, run_cli

ROOT = Path(__file__).parent.parent

# Four unset variables across three sections, bad values and unknown keys across five
# sections, and two duplicate keys (one at the top, one inside a provider).
MANY_ERRORS = """\
database:
  url: postgresql://127.0.0.1:9/shop
timezone: UTC
colour: red
sweep:
  batch_size: 0
  speed: fast
schedule:
  factor: 0.5
providers:
  - id: p1
    name: alaya
    kind: znet
    base_url: http://127.0.0.1:9
    kod: "4711"
    sifre: ${ALAYA_SIFRE}
    sifre: ${ALAYA_SIFRE_TWO}
  - id: p2
    name: barakat
    kind: barakat
    base_url: http://127.0.0.1:9
    token: ${BARAKAT_TOKEN}
    timeout: fast
    colour: blue
healthcheck:
  ping_url: ${ORDERMON_PING_URL}
notify:
  max_attempts: 0
  webhooks:
    - name: backend
      url: https://shop.example/hooks
      secret: ${ORDERMON_WEBHOOK_SECRET}
timezone: Europe/Istanbul
"""

EXPECTED = [
    "providers[0].sifre: duplicate key at line 17 (first at line 16); remove one of them",
    "timezone: duplicate key at line 33 (first at line 3); remove one of them",
    "colour: unknown key (expected one of:",
    "schedule.factor: must be between 1 and 100, got 0.5",
    "sweep.speed: unknown key",
    "sweep.batch_size: must be at least 1, got 0",
    "healthcheck.ping_url: environment variable ORDERMON_PING_URL is not set",
    "notify.max_attempts: must be at least 1, got 0",
    "notify.webhooks[0].secret: environment variable ORDERMON_WEBHOOK_SECRET is not set",
    "providers[0].sifre: environment variable ALAYA_SIFRE_TWO is not set",
    "providers[1].colour: unknown key",
    "providers[1].timeout: expected a duration like 20s, got 'fast'",
    "providers[1].token: environment variable BARAKAT_TOKEN is not set",
]


def _sweep(path: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_cli("sweep", "--config", str(path), env=env, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    return result.returncode, result.stderr


def test_one_run_reports_every_error_with_its_key(tmp_path: Path) -> None:
    """Unset variables, bad values, unknown keys and duplicate keys, across sections: all in
    one run, one per line, each naming its key, exit 2."""
    path = tmp_path / "c.yaml"
    path.write_text(MANY_ERRORS)
    code, stderr = _sweep(path)
    assert code == 2
    lines = stderr.rstrip("\n").split("\n")
    assert lines[0] == f"ordermon: {path} has {len(EXPECTED)} errors:", stderr
    assert len(lines) == 1 + len(EXPECTED), stderr
    for expected, line in zip(EXPECTED, lines[1:], strict=True):
        assert line.startswith("  " + expected), (expected, stderr)


def test_a_lone_error_stays_one_line(tmp_path: Path) -> None:
    """One error is one line, as before: no header, no list."""
    path = tmp_path / "c.yaml"
    path.write_text("database: {url: postgresql://127.0.0.1:9/x}\nsweep: {batch_size: 0}\n")
    code, stderr = _sweep(path)
    assert code == 2
    assert stderr == "ordermon: sweep.batch_size: must be at least 1, got 0\n"


def test_a_duplicate_key_alone_is_an_error_not_last_wins(tmp_path: Path) -> None:
    """A key given twice is refused, naming the key and both lines, even when both values
    are valid: YAML would silently keep the last."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "database: {url: postgresql://127.0.0.1:9/x}\n"
        "sweep:\n  lease: 5m\n  batch_size: 10\n  lease: 10m\n"
    )
    code, stderr = _sweep(path)
    assert code == 2
    assert stderr == (
        "ordermon: sweep.lease: duplicate key at line 5 (first at line 3); remove one of them\n"
    )
    with pytest.raises(errors.ConfigError, match="duplicate key"):
        config.parse_yaml("a: 1\na: 2\n")


def test_the_list_is_bounded(tmp_path: Path) -> None:
    """A file of 5,001 unknown keys and 5,000 duplicates shows at most 50 errors, then says
    how many more there are; the output stays a few kilobytes."""
    path = tmp_path / "c.yaml"
    unknown = "".join(f"  k{i}: 1\n" for i in range(5000))
    twice = "".join(f"  d: {i}\n" for i in range(5001))
    path.write_text(
        "database: {url: postgresql://127.0.0.1:9/x}\nsweep:\n" + unknown + "history:\n" + twice
    )
    code, stderr = _sweep(path)
    assert code == 2
    lines = stderr.rstrip("\n").split("\n")
    assert lines[0] == f"ordermon: {path} has 10001 errors:"
    assert len(lines) <= 52
    assert re.fullmatch(r"  and \d+ more", lines[-1]), lines[-1]
    shown = len(lines) - 2
    assert lines[-1] == f"  and {10001 - shown} more"
    assert len(stderr.encode()) < 4500


def test_a_file_of_broken_providers_costs_little_more_than_reading_it(tmp_path: Path) -> None:
    """20,000 broken providers: once the list is full the rest are not read, and the report
    says the count is a lower bound."""
    path = tmp_path / "c.yaml"
    path.write_text("providers:\n" + "- {kind: znet}\n" * 20_000)
    document = config.parse_yaml(path.read_text())
    started = time.monotonic()
    with pytest.raises(errors.ConfigError) as caught:
        config.parse(document, {})
    assert time.monotonic() - started < 1.0
    lines = str(caught.value).split("\n")
    assert re.fullmatch(r"the config has at least \d+ errors:", lines[0]), lines[0]
    assert re.fullmatch(r"  and at least \d+ more \(reading stopped after 50 errors\)", lines[-1])
    assert len(lines) == 52


def test_several_unset_variables_in_one_value_are_named_together() -> None:
    """Each unset variable of a value is named, in one line for its key."""
    document = config_document("postgresql://127.0.0.1:9/x", "http://127.0.0.1:9")
    document["database"]["url"] = "postgresql://${DB_USER}:${DB_PASSWORD}@db/shop"
    with pytest.raises(errors.ConfigError) as caught:
        config.parse(document, {})
    assert str(caught.value) == (
        "database.url: environment variables DB_USER, DB_PASSWORD are not set "
        "(referenced as ${DB_USER}, ${DB_PASSWORD})"
    )
    document["database"]["url"] = "".join(f"${{V{i}}}" for i in range(10_000))
    with pytest.raises(errors.ConfigError) as caught:
        config.parse(document, {})
    assert str(caught.value).endswith("${V4} and 9995 more)")
    assert len(str(caught.value)) < 300


def _problems(document: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(errors.ConfigError) as caught:
        config.parse(document, {})
    assert caught.value.exit_code == 2
    return caught.value.problems


def test_a_bad_value_makes_no_follow_up_errors() -> None:
    """A value that cannot be read is reported once: the checks that compare it with another
    key (lease against timeouts, delays against each other) wait until it can be read."""
    document = config_document("postgresql://127.0.0.1:9/x", "http://127.0.0.1:9")
    document["sweep"]["lease"] = "fast"
    document["schedule"]["base_delay"] = "soon"
    document["providers"][0]["timeout"] = "slow"
    document["providers"][0]["schedule"] = {"max_delay": "1s"}
    assert _problems(document) == (
        "schedule.base_delay: expected a duration like 20s, got 'soon'",
        "sweep.lease: expected a duration like 20s, got 'fast'",
        "providers[0].timeout: expected a duration like 20s, got 'slow'",
    )


def test_a_file_that_is_not_a_mapping_is_one_error(tmp_path: Path) -> None:
    """A file holding a list is one error, not one per missing key."""
    path = tmp_path / "c.yaml"
    path.write_text("- database\n- sweep\n")
    code, stderr = _sweep(path)
    assert (code, stderr) == (2, "ordermon: (top level): expected a mapping of keys, got list\n")


def test_a_provider_that_cannot_be_read_keeps_the_others_indices() -> None:
    """providers[0] is not a mapping: providers[1]'s errors still carry index 1."""
    document = config_document("postgresql://127.0.0.1:9/x", "http://127.0.0.1:9")
    document["providers"] = ["x", dict(document["providers"][0], timeout="45s")]
    assert _problems(document) == (
        "providers[0]: expected a mapping of keys, got str",
        "providers[1].timeout: 45s is too long for sweep.lease (60s); the lease must be at "
        "least twice the longest provider timeout",
    )


def test_errors_from_every_provider_and_webhook() -> None:
    """Two providers and two webhooks, each with its own errors: all are listed, with index."""
    document = config_document("postgresql://127.0.0.1:9/x", "http://127.0.0.1:9")
    document["providers"].append(dict(document["providers"][0], id="p2", name="bad name"))
    document["providers"][0]["kind"] = "ftp"
    hook = {"name": "a", "url": "ftp://x", "secret": "short"}
    document["notify"] = {"webhooks": [hook, dict(hook, url="http://x", events=["order.lost"])]}
    problems = _problems(document)
    assert [p.split(":")[0] for p in problems] == [
        "notify.webhooks[0].url",
        "notify.webhooks[0].secret",
        "notify.webhooks[1].events[0]",
        "notify.webhooks[1].secret",
        "notify.webhooks[1].name",
        "providers[0].kind",
        "providers[1].name",
    ]


def test_every_problem_is_bounded() -> None:
    """However many errors, each is one short line: no value is echoed whole."""
    huge = "v" * 1_000_000
    document = config_document("postgresql://127.0.0.1:9/x", "http://127.0.0.1:9")
    document.update(timezone=huge, on_failed=huge, sweep={"lease": huge, huge: 1})
    document["providers"][0].update(name=huge, kind=huge)
    problems = _problems(document)
    assert len(problems) >= 5
    assert all(len(p) < 300 for p in problems), [p[:400] for p in problems]
    assert len(validate.summary(problems, 0, "c.yaml")) < 4000


def test_the_example_with_nothing_set_lists_every_missing_variable(tmp_path: Path) -> None:
    """The shipped example with no secret set: one run names both variables, exit 2."""
    code, stderr = _sweep(ROOT / "config.example.yaml")
    assert code == 2
    assert stderr.split("\n")[1:] == [
        "  providers[0].sifre: environment variable ALAYA_SIFRE is not set "
        "(referenced as ${ALAYA_SIFRE})",
        "  providers[1].token: environment variable BARAKAT_TOKEN is not set "
        "(referenced as ${BARAKAT_TOKEN})",
        "",
    ]


def test_the_example_sweeps_with_its_two_secrets(db_url: str) -> None:
    """The shipped example, with its two secrets set (and the database named in the
    environment), runs a sweep: exit 0, nothing on stderr."""
    env = {"ALAYA_SIFRE": "x", "BARAKAT_TOKEN": "b", "ORDERMON_DATABASE_URL": db_url}
    code, stderr = _sweep(ROOT / "config.example.yaml", env)
    assert (code, stderr) == (0, "")


def test_uncommenting_every_block_asks_for_every_secret(tmp_path: Path) -> None:
    """With every optional section taken in and nothing set, one run names all six."""
    from tests.test_config import uncommented

    path = tmp_path / "full.yaml"
    path.write_text(uncommented((ROOT / "config.example.yaml").read_text())[0])
    code, stderr = _sweep(path)
    assert code == 2
    named = re.findall(r"environment variable (\w+) is not set", stderr)
    assert sorted(named) == sorted(
        [
            "ALAYA_SIFRE",
            "BARAKAT_TOKEN",
            "SISTER_TOKEN",
            "GIFTCARDS_TOKEN",
            "ORDERMON_PING_URL",
            "ORDERMON_WEBHOOK_SECRET",
        ]
    )


# A value substituted from the environment is a secret wherever it lands: an error that would
# echo it (a bad provider name, an id already used, a bad URL) hides it.
SECRET_ECHOES = """\
database:
  url: postgresql://127.0.0.1:9/shop
timezone: ${SHOP_SECRET}
providers:
  - id: ${SHOP_SECRET}
    name: ${SHOP_SECRET}
    kind: znet
    base_url: http://127.0.0.1:9
    kod: "4711"
    sifre: x
  - id: ${SHOP_SECRET}
    name: second
    kind: znet
    base_url: http://127.0.0.1:9
    kod: "4711"
    sifre: x
healthcheck:
  ping_url: ${SHOP_SECRET}
"""


def test_no_error_echoes_a_value_from_the_environment(tmp_path: Path) -> None:
    secret = "s3cr3t value!"
    path = tmp_path / "c.yaml"
    path.write_text(SECRET_ECHOES)
    result = run_cli("sweep", "--config", str(path), env={"SHOP_SECRET": secret})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "providers[0].name:" in result.stderr  # the errors are still there, keys named
    assert "timezone: unknown time zone" in result.stderr
    assert "providers[1].id:" in result.stderr
    assert secret not in result.stderr and secret not in result.stdout
    assert "s3cr3t" not in result.stderr


def test_a_ping_url_with_user_info_is_refused_without_echoing_it() -> None:
    document = config_document("postgresql://127.0.0.1:9/shop", "http://127.0.0.1:9")
    document["healthcheck"] = {"ping_url": "https://user:pa55word@hc-ping.example/abc"}
    with pytest.raises(errors.ConfigError) as caught:
        config.parse(document, {})
    message = str(caught.value)
    assert message.startswith("healthcheck.ping_url: ")
    assert "user info" in message
    assert "pa55word" not in message and "abc" not in message


def test_a_short_lease_under_several_providers_is_one_error_on_the_lease() -> None:
    """sweep.lease 10s under three providers' default 20s timeouts: the mistake is the lease,
    said once, with what would do."""
    document = config_document("postgresql://127.0.0.1:9/x", "http://127.0.0.1:9")
    first = document["providers"][0]
    document["providers"] = [dict(first, id=f"p{n}", name=f"p{n}", timeout="20s") for n in range(3)]
    document["sweep"]["lease"] = "10s"
    assert _problems(document) == (
        "sweep.lease: 10s is shorter than twice the timeout of providers[0], providers[1], "
        "providers[2] (the longest 20s); make the lease at least 40s, or those timeouts shorter",
    )


def test_delays_that_contradict_each_other_say_both_values() -> None:
    document = config_document("postgresql://127.0.0.1:9/x", "http://127.0.0.1:9")
    document["schedule"] = {"base_delay": "2m", "max_delay": "1m"}
    document["notify"] = {"retry_base_delay": "10m", "retry_max_delay": "5m"}
    assert _problems(document) == (
        "schedule.max_delay: 60s must not be shorter than base_delay (120s)",
        "notify.retry_max_delay: 300s must not be shorter than retry_base_delay (600s)",
    )
