"""Loading and validating the configuration."""

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ordermon import config, errors
from tests.conftest import config_document

ROOT = Path(__file__).parent.parent


def _error(document: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(errors.ConfigError) as caught:
        config.parse(document, env or {})
    assert caught.value.exit_code == 2
    return str(caught.value)


def _doc(**overrides: Any) -> dict[str, Any]:
    return config_document("postgresql://localhost/shop", "http://127.0.0.1:9", **overrides)


EXAMPLE_SECRETS = {"ALAYA_SIFRE": "x", "BARAKAT_TOKEN": "b"}
# A commented-out line of YAML: "#", then the line at its own indentation (an even number of
# spaces); explanations have one or three spaces after the "#".
_COMMENTED_KEY = re.compile(r"^#(  )*([a-z_]+:( |$)|- )")


def uncommented(text: str) -> tuple[str, int]:
    """``text`` with every commented-out block (from a commented key or list item down to the
    next line that is not a comment) taken in, and how many blocks there were."""
    lines, blocks, inside = [], 0, False
    for line in text.split("\n"):
        starts = bool(_COMMENTED_KEY.match(line))
        blocks += starts and not inside
        inside = line.startswith("#") and (inside or starts)
        lines.append(line[1:] if inside else line)
    return "\n".join(lines), blocks


def test_example_config_loads_with_its_two_secrets() -> None:
    """config.example.yaml, as shipped, loads with only the two providers' secrets set: every
    optional section is there, commented out."""
    cfg = config.load(ROOT / "config.example.yaml", EXAMPLE_SECRETS)
    assert [(p.name, p.kind) for p in cfg.providers] == [("alaya", "znet"), ("barakat", "barakat")]
    assert cfg.providers[0].rate_limit == 10.0
    assert cfg.providers[1].rate_limit == 5.0 and cfg.providers[1].batch_size == 50
    assert cfg.providers[0].policy.max_delay == dt.timedelta(minutes=5)
    assert cfg.providers[0].policy.base_delay == dt.timedelta(seconds=30)
    assert cfg.sweep.lease == dt.timedelta(minutes=5)
    assert cfg.history_keep == dt.timedelta(days=30)
    assert cfg.metrics_textfile is None and cfg.ping_url is None
    assert cfg.notify.webhooks == () and cfg.notify.max_attempts == 12


def test_example_config_commented_sections_load_when_taken_in(tmp_path: Path) -> None:
    """Every commented-out section of the example (metrics, healthcheck, webhooks, two more
    providers) is valid YAML at its place: uncommented, the whole file loads."""
    text, blocks = uncommented((ROOT / "config.example.yaml").read_text())
    assert blocks == 5
    path = tmp_path / "full.yaml"
    path.write_text(text)
    env = {
        **EXAMPLE_SECRETS,
        "SISTER_TOKEN": "s",
        "GIFTCARDS_TOKEN": "g",
        "ORDERMON_PING_URL": "https://hc-ping.example/abc",
        "ORDERMON_WEBHOOK_SECRET": "0123456789abcdef0123",
    }
    cfg = config.load(path, env)
    kinds = [p.kind for p in cfg.providers]
    assert kinds == ["znet", "barakat", "internal", "json"]
    assert cfg.ping_url == "https://hc-ping.example/abc" and cfg.ping_timeout == 2.0
    assert cfg.metrics_textfile == Path("/var/lib/node_exporter/textfile_collector/ordermon.prom")
    assert cfg.notify.webhooks[0].name == "backend"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("10m", 600),
        ("24h", 86400),
        ("30d", 2592000),
        (45, 45),
        ("2.5s", 2.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    """Durations take ms, s, m, h, d or bare seconds."""
    assert config.parse_duration(text, "k").total_seconds() == seconds


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("sweep", "batch_size"), 0, "sweep.batch_size: must be at least 1"),
        (("sweep", "concurrency"), "many", "sweep.concurrency: expected a whole number"),
        (("sweep", "lease"), "fast", "sweep.lease: expected a duration like 20s, got 'fast'"),
        (("sweep", "soft_time_limit"), "2h", "sweep.soft_time_limit: must not be longer"),
        (("sweep", "time_limit"), "0s", "sweep.time_limit: must be longer than 0s"),
        (("schedule", "factor"), 0.5, "schedule.factor: must be between 1 and 100"),
        (("schedule", "jitter"), 2, "schedule.jitter: must be between"),
        (("schedule", "max_attempts"), 0, "schedule.max_attempts: must be at least 1"),
        (
            ("schedule", "max_delay"),
            "500ms",
            "schedule.max_delay: 0.5s must not be shorter than base_delay (1s)",
        ),
        (("schedule", "give_up_after"), "soon", "schedule.give_up_after: expected a duration"),
        (("schedule", "first_check_after"), [], "schedule.first_check_after: expected"),
        (("schedule", "base_delay"), True, "schedule.base_delay: expected a duration"),
        (("schedule", "bogus"), 1, "schedule.bogus: unknown key"),
        (("database", "url"), None, "database.url: required"),
        (("database", "host"), "x", "database.host: unknown key"),
    ],
)
def test_errors_name_the_key(path: tuple[str, str], value: object, expected: str) -> None:
    """Every validation error names the key path."""
    document = _doc()
    document[path[0]][path[1]] = value
    assert expected in _error(document)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("timeout", "fast", "providers[0].timeout: expected a duration like 20s, got 'fast'"),
        ("timeout", "45s", "providers[0].timeout: 45s is too long for sweep.lease"),
        ("kind", "ftp", "providers[0].kind: expected one of znet, barakat, apstore, internal"),
        ("kind", "barakat", "providers[0].kod: unknown key"),
        ("base_url", "znet.example", "providers[0].base_url: expected an http"),
        ("sifre", None, "providers[0].sifre: required"),
        ("kod", "", "providers[0].kod: must not be empty"),
        ("name", "has space", "providers[0].name: use letters"),
        ("max_reply_bytes", 10, "providers[0].max_reply_bytes: must be at least 256"),
        ("schedule", {"factor": "x"}, "providers[0].schedule.factor: expected a number"),
        ("token", "x", "providers[0].token: unknown key"),
    ],
)
def test_provider_errors_name_the_key(key: str, value: object, expected: str) -> None:
    """Provider keys are validated with their index in the path."""
    document = _doc()
    document["providers"][0][key] = value
    assert expected in _error(document)


def test_top_level_errors() -> None:
    """Top-level keys: unknown keys, on_failed, timezone and provider lists."""
    assert "colour: unknown key" in _error(_doc(colour="red"))
    assert "on_failed: expected one of refund, reject, hold" in _error(_doc(on_failed="drop"))
    assert "timezone: unknown time zone 'Mars/Base'" in _error(_doc(timezone="Mars/Base"))
    for host_dependent in ("localtime", "Factory", "posixrules", "right/UTC", "posix/UTC"):
        assert "timezone: unknown time zone" in _error(_doc(timezone=host_dependent))
    assert "providers: expected a list" in _error(_doc(providers={"a": 1}))
    assert "providers[0]: expected a mapping" in _error(_doc(providers=["x"]))
    assert "history.keep: expected a duration" in _error(_doc(history={"keep": "forever"}))
    assert "metrics.path: unknown key" in _error(_doc(metrics={"path": "/x"}))
    assert "healthcheck.ping_url: expected an http" in _error(
        _doc(healthcheck={"ping_url": "ftp://x"})
    )
    assert "healthcheck.timeout: must be longer" in _error(_doc(healthcheck={"timeout": 0}))


def test_duplicate_provider_ids_and_names() -> None:
    """Two providers cannot share an id or a name."""
    document = _doc()
    document["providers"].append(dict(document["providers"][0], name="other"))
    assert "providers[1].id: '3b6d4c1e" in _error(document)
    document["providers"][1]["id"] = "another"
    document["providers"][1]["name"] = "alaya"
    assert "providers[1].name: 'alaya' is already used by providers[0]" in _error(document)


def test_environment_substitution_and_override() -> None:
    """${VAR} comes from the environment; ORDERMON_DATABASE_URL wins over database.url."""
    document = _doc()
    document["providers"][0]["sifre"] = "${ALAYA_SIFRE}"
    cfg = config.parse(document, {"ALAYA_SIFRE": "from-env", "ORDERMON_DATABASE_URL": "x://y"})
    assert cfg.providers[0].sifre == "from-env"
    assert cfg.database_url == "x://y"
    message = _error(document, {})
    assert "providers[0].sifre: environment variable ALAYA_SIFRE is not set" in message


def test_secrets_stay_out_of_repr() -> None:
    """The password and the database URL never show in a dataclass repr."""
    document = _doc()
    document["providers"][0]["sifre"] = "top-secret-value"
    cfg = config.parse(document, {})
    assert "top-secret-value" not in repr(cfg)
    assert "localhost/shop" not in repr(cfg)


def test_provider_schedule_overrides_only_its_keys() -> None:
    """A provider's schedule changes its own keys and inherits the rest."""
    document = _doc()
    document["providers"][0]["schedule"] = {"max_delay": "20s"}
    cfg = config.parse(document, {})
    assert cfg.providers[0].policy.max_delay == dt.timedelta(seconds=20)
    assert cfg.providers[0].policy.give_up_after == cfg.policy.give_up_after


def test_file_errors(tmp_path: Path) -> None:
    """A missing file, bad YAML and the search path each give a clear error."""
    with pytest.raises(errors.ConfigError, match="cannot read config file"):
        config.load(tmp_path / "missing.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("database: [unclosed\n")
    with pytest.raises(errors.ConfigError, match="not valid YAML at line"):
        config.load(bad, {})
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_doc()))
    assert config.find_path(None, {"ORDERMON_CONFIG": str(good)}) == good
    assert config.find_path(good, {}) == good


@pytest.mark.parametrize(
    ("kind", "key", "value", "expected"),
    [
        ("znet", "rate_limit", "fast", "providers[0].rate_limit: expected a rate like 10/s"),
        ("znet", "rate_limit", "0/s", "providers[0].rate_limit: expected a rate"),
        ("znet", "batch_size", 5, "providers[0].batch_size: must be at most 1"),
        ("internal", "batch_size", 51, "providers[0].batch_size: must be at most 50"),
        ("barakat", "max_concurrency", 0, "providers[0].max_concurrency: must be at least 1"),
        ("barakat", "pause", {"after_failures": 0}, "providers[0].pause.after_failures: must"),
        ("barakat", "pause", {"cooldown": "x"}, "providers[0].pause.cooldown: expected a dur"),
        (
            "barakat",
            "pause",
            {"cooldown": "1h", "max_cooldown": "1m"},
            "providers[0].pause.max_cooldown: 60s must not be shorter than cooldown (3600s)",
        ),
        ("barakat", "proxy", "proxy.local", "providers[0].proxy: expected an http"),
        ("barakat", "token", None, "providers[0].token: required"),
        ("internal", "tenant_host", None, "providers[0].tenant_host: required"),
        ("json", "url", "https://x.example/orders", "providers[0].url: must contain {reference}"),
        ("json", "statuses", {"OK": "done"}, "providers[0].statuses.OK: expected one of"),
        ("json", "statuses", {}, "providers[0].statuses: map at least one"),
        ("json", "method", "DELETE", "providers[0].method: expected one of GET, POST"),
        ("json", "status_path", None, "providers[0].status_path: required"),
        ("json", "headers", ["x"], "providers[0].headers: expected a mapping"),
    ],
)
def test_kind_keys_name_themselves(kind: str, key: str, value: object, expected: str) -> None:
    """Each kind's own keys and the shared limits are validated with their key path."""
    from tests.conftest import provider_doc

    document = _doc(providers=[provider_doc(kind, "http://127.0.0.1:9")])
    document["providers"][0][key] = value
    assert expected in _error(document)


def test_substituted_values_are_secrets() -> None:
    """Every ${VAR} value in a provider (a URL key, a header) is redacted like a password."""
    from tests.conftest import provider_doc

    doc = provider_doc("json", "http://127.0.0.1:9")
    doc["url"] = "http://127.0.0.1:9/orders/{reference}?key=${API_KEY}"
    doc["headers"] = {"X-Key": "${HEADER_KEY}"}
    cfg = config.parse(_doc(providers=[doc]), {"API_KEY": "k-123456", "HEADER_KEY": "h-654321"})
    assert {"k-123456", "h-654321"} <= set(cfg.providers[0].secrets)
    assert "k-123456" not in repr(cfg) and "h-654321" not in repr(cfg)


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        ({"pg_channel": "Bad Channel"}, "notify.pg_channel: use lower-case"),
        ({"include_pin": "yes"}, "notify.include_pin: expected true or false"),
        ({"max_attempts": 0}, "notify.max_attempts: must be at least 1"),
        ({"webhooks": {}}, "notify.webhooks: expected a list"),
        (
            {"webhooks": [{"name": "a", "url": "ftp://x", "secret": "s" * 16}]},
            "notify.webhooks[0].url: expected an http",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://x", "secret": "short"}]},
            "notify.webhooks[0].secret: use at least 16 characters",
        ),
        (
            {
                "webhooks": [
                    {"name": "a", "url": "http://x", "secret": "s" * 16, "events": ["order.lost"]}
                ]
            },
            "notify.webhooks[0].events[0]: expected",
        ),
        (
            {"webhooks": [{"name": "a", "url": "http://x", "secret": "s" * 16}] * 2},
            "notify.webhooks[1].name: 'a' is used twice",
        ),
    ],
)
def test_notify_errors_name_the_key(notify: dict[str, object], expected: str) -> None:
    """The notify section is validated like every other."""
    assert expected in _error(_doc(notify=notify))
