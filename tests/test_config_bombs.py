"""The config file is bounded: its size, YAML aliases, nesting depth and the length of every
error message; whatever the file holds, a config error exits 2 with one short line."""

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ordermon import config, errors
from ordermon.config import notify as notify_config
from ordermon.config import providers as provider_config
from ordermon.config import validate
from ordermon.sweep import schedule
from tests.conftest import config_document, provider_doc, run_cli

# The aliases share nodes, so only echoing the value (its repr) expands it: 9**9 strings.
BILLION_LAUGHS = """\
database: {url: "postgresql://127.0.0.1:9/x"}
on_failed:
- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
- &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
- &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
- &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
- &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
- &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
- &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
- &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
- [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


DATABASE = "database: {url: postgresql://127.0.0.1:9/x}\n"


def _refused(path: Path, timeout: float = 60) -> tuple[str, float]:
    """Run a sweep on ``path``: it must exit 2 with one short line and no traceback."""
    started = time.monotonic()
    result = run_cli("sweep", "--config", str(path), timeout=timeout)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[:2000]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.encode()) < 1024, result.stderr[:2000]
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    return result.stderr, elapsed


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    """A billion-laughs YAML is refused (aliases are not allowed) in seconds, exit 2."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert path.stat().st_size < 600
    message, elapsed = _refused(path, timeout=60)
    assert "YAML aliases (*name) are not allowed in ordermon's config" in message
    assert elapsed < 10


def test_a_single_alias_is_refused(tmp_path: Path) -> None:
    """Even one harmless-looking alias (or merge key) is refused, naming its line."""
    path = tmp_path / "alias.yaml"
    path.write_text("defaults: &d {timeout: 5s}\nsweep:\n  <<: *d\n")
    message, _ = _refused(path)
    assert "aliases" in message and "line 3" in message


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20_000 + "]" * 20_000,
        "{a: " * 20_000 + "1" + "}" * 20_000,
        "".join("  " * i + "- \n" for i in range(700)),
    ],
    ids=["flow-sequence", "flow-mapping", "block-sequence"],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    """A document nested thousands deep is refused with a message, never a RecursionError."""
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    message, _ = _refused(path)
    assert "nested deeper than" in message


def test_nesting_within_the_bound_is_read(tmp_path: Path) -> None:
    """Nesting up to the bound is YAML like any other: the error is about the keys."""
    path = tmp_path / "ok.yaml"
    path.write_text(DATABASE + "history: " + "[" * 40 + "]" * 40 + "\n")
    message, _ = _refused(path)
    assert "history: expected a mapping of keys, got list" in message


def test_a_file_over_the_size_limit_is_refused_at_once(tmp_path: Path) -> None:
    """A 2 MB config is refused before it is read, exit 2 at once."""
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 210_000)
    assert path.stat().st_size > 2_000_000
    message, elapsed = _refused(path)
    assert "larger than 1 MB" in message
    assert elapsed < 10


def test_a_50_mb_value_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A 50 MB value in a key is refused with a message under 1 KB, exit 2."""
    path = tmp_path / "huge.yaml"
    with path.open("w") as out:
        out.write("sweep:\n  lease: ")
        chunk = "x" * 1_000_000
        for _ in range(50):
            out.write(chunk)
        out.write("\n")
    _refused(path)


def test_a_stream_without_end_is_refused(tmp_path: Path) -> None:
    """A config path that never ends (/dev/zero) is refused after a bounded read."""
    message, elapsed = _refused(Path("/dev/zero"))
    assert "larger than 1 MB" in message
    assert elapsed < 10


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sweep:\n  lease: " + "x" * 900_000 + "\n", "sweep.lease: expected a duration"),
        ("sweep:\n  ? " + "k" * 900_000 + "\n  : 1\n", "unknown key"),
        ("timezone: " + "Z" * 900_000 + "\n", "timezone: unknown time zone"),
        ("sweep:\n  batch_size: 1" + "0" * 5_000 + "\n", "line 3: a value cannot be read"),
        ("on_failed: [" + "1, " * 200_000 + "1]\n", "on_failed: expected one of"),
        ("timezone: 2001-13-45\n", "not valid YAML"),
        ('timezone: "\\e[2J\\a\\0"\n', "timezone: holds a control character (U+001B"),
        ("{[1, 2]: 3}\n", "not valid YAML"),
        ("on_failed: \x00\x01\x02", "not valid YAML"),
    ],
    ids=[
        "long-value",
        "long-key",
        "long-timezone",
        "huge-int",
        "long-list",
        "bad-timestamp",
        "escapes",
        "unhashable-key",
        "binary",
    ],
)
def test_config_errors_are_short_and_escaped(tmp_path: Path, text: str, says: str) -> None:
    """Whatever a file within the size limit holds, its error is one short line, exit 2,
    with every control character escaped."""
    path = tmp_path / "c.yaml"
    path.write_text(DATABASE + text)
    message, _ = _refused(path)
    assert says in message
    assert "\x1b" not in message and "\x00" not in message and "\x07" not in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """A config that is not UTF-8 is a config error, exit 2."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(DATABASE.encode() + b"timezone: Europe/\xdcrk\n")
    message, _ = _refused(path)
    assert "not UTF-8" in message


HUGE = "v" * 1_000_000
_HOOK = {"name": "h", "url": "http://127.0.0.1:9/hook", "secret": "s" * 20}


def _doc(**overrides: Any) -> dict[str, Any]:
    return config_document("postgresql://localhost/shop", "http://127.0.0.1:9", **overrides)


def _provider(**keys: Any) -> dict[str, Any]:
    return _doc(provider=keys)


def _json_provider(**keys: Any) -> dict[str, Any]:
    return _doc(providers=[provider_doc("json", "http://127.0.0.1:9", **keys)])


def _twins(attribute: str) -> dict[str, Any]:
    """Two providers sharing a huge id or name."""
    first = provider_doc("znet", "http://127.0.0.1:9", id="a", name="a")
    second = provider_doc("znet", "http://127.0.0.1:9", id="b", name="b")
    first[attribute] = second[attribute] = HUGE if attribute == "id" else "n" * 100_000
    return _doc(providers=[first, second])


@pytest.mark.parametrize(
    "document",
    [
        _doc(timezone=HUGE),
        _doc(on_failed=HUGE),
        _doc(sweep={"lease": HUGE}),
        _doc(sweep={"batch_size": HUGE}),
        _doc(sweep={"batch_size": -(10**5000)}),
        _doc(sweep={HUGE: 1}),
        _doc(history={"keep": HUGE}),
        _doc(schedule={"factor": HUGE}),
        _doc(schedule={"factor": 10**4000}),
        _doc(schedule={"max_attempts": -(10**5000)}),
        _doc(**{HUGE: 1}),
        _provider(kind=HUGE),
        _provider(name=HUGE),
        _provider(rate_limit=HUGE),
        _provider(timeout=[HUGE]),
        _provider(pause={"after_failures": HUGE}),
        _json_provider(statuses={HUGE: HUGE}),
        _json_provider(statuses={"A": HUGE}),
        _json_provider(headers={HUGE: None}),
        _json_provider(method=HUGE),
        _doc(notify={"webhooks": [{**_HOOK, "name": HUGE}]}),
        _doc(notify={"webhooks": [{**_HOOK, "events": [HUGE]}]}),
        _doc(notify={"webhooks": [_HOOK, {**_HOOK, "name": "h"}]}),
        _doc(notify={"pg_channel": HUGE}),
        _doc(notify={HUGE: 1}),
        _twins("id"),
        _twins("name"),
    ],
)
def test_every_validation_message_is_bounded(document: dict[str, Any]) -> None:
    """No validation message echoes more than a short cut of the value it refuses (a file
    with several errors has one such line for each)."""
    with pytest.raises(errors.ConfigError) as caught:
        config.parse(document, {})
    assert caught.value.exit_code == 2
    problems = caught.value.problems
    assert all(len(problem) < 300 for problem in problems), [p[:400] for p in problems]
    assert len(str(caught.value)) < 300 * len(problems), str(caught.value)[:400]


def test_cut_value() -> None:
    """Values echoed in messages are cut to about 60 characters with an ellipsis."""
    assert validate.quoted("soon") == "'soon'"
    cut = validate.quoted("x" * 10_000)
    assert cut.endswith("…") and len(cut) <= 64
    assert validate.quoted("\x1b[2J") == "'\\x1b[2J'"
    assert len(validate.quoted(list(range(100_000)))) <= 64
    assert len(validate.quoted(10**5000)) <= 64


def test_loader_refuses_what_safe_load_accepts() -> None:
    """The loader is YAML's safe loader without aliases and without deep nesting."""
    assert config.parse_yaml("a: [1, {b: c}]\n") == {"a": [1, {"b": "c"}]}
    with pytest.raises(errors.ConfigError, match="aliases"):
        config.parse_yaml("a: &x 1\nb: *x\n")
    with pytest.raises(errors.ConfigError, match="nested deeper than 50"):
        config.parse_yaml("[" * 51 + "]" * 51)
    assert config.parse_yaml("[" * 50 + "]" * 50) is not None
    assert yaml.safe_load("a: &x 1\nb: *x\n") == {"a": 1, "b": 1}  # what plain YAML does


def test_parse_of_provider_and_notify_sections_is_bounded() -> None:
    """The provider and notify sections cut what they echo, like the top level."""
    with pytest.raises(errors.ConfigError) as caught:
        provider_config.parse({"kind": "znet", "name": HUGE}, "p", schedule.Policy(), {})
    assert all(len(problem) < 300 for problem in caught.value.problems)
    assert len(str(caught.value)) < 400
    with pytest.raises(errors.ConfigError) as caught:
        notify_config.parse({"pg_channel": HUGE}, {})
    assert len(str(caught.value)) < 300
