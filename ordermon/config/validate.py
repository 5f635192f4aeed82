"""Small checks for configuration values; every error names the key path and exits 2.

A value or key echoed in a message goes through `quoted` or `cut`: at most about 60
characters, control characters escaped, so no config file makes a long or raw message."""

import datetime as dt
import re
import reprlib
from collections.abc import Mapping
from typing import Any

from ordermon import errors

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
# Control characters and lone surrogates: no config value needs one, and in a URL, a header
# or a database password each of them is a bug or an attack.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
ECHO = 60
# Looks at a few items of a few levels only: the cost of echoing a value never grows with it.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 3, 6, 6
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = ECHO
MAX_DURATION = dt.timedelta(days=3650)
MAX_INTEGER = 2**31 - 1  # PostgreSQL's integer: every count ordermon keeps fits in one


def quoted(value: Any) -> str:
    """``value`` as echoed in a message: its repr, cut to about ECHO characters with "…"."""
    try:
        text = repr(value[: ECHO + 1]) if isinstance(value, str) else _SHORT_REPR.repr(value)
    except ValueError:  # an int of more than 4,300 digits has no repr
        return "a number too long to show"
    return text if len(text) <= ECHO else text[:ECHO] + "…"


def cut(text: Any) -> str:
    """A key or word from the file as part of a message: escaped, at most about ECHO
    characters with "…"."""
    whole = str(text)
    shown = repr(whole[: ECHO + 1])[1:-1]
    return shown if len(shown) <= ECHO and len(whole) <= ECHO else shown[:ECHO] + "…"


class Reader:
    """Reads values out of the YAML tree, substituting ``${VAR}`` from the environment and
    remembering every substituted value: those are secrets, redacted wherever they could show."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.substituted: list[str] = []

    def string(self, value: Any, key: str) -> str:
        if value is None:
            raise errors.ConfigError(f"{key}: required, but missing")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise errors.ConfigError(f"{key}: expected a string, got {kind(value)}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.env:
                raise errors.ConfigError(
                    f"{key}: environment variable {cut(name)} is not set "
                    f"(referenced as ${{{cut(name)}}})"
                )
            self.substituted.append(self.env[name])
            return self.env[name]

        text = _ENV_VAR.sub(substitute, str(value))
        if not text.strip():
            raise errors.ConfigError(f"{key}: must not be empty")
        bad = _UNPRINTABLE.search(text)
        if bad is not None:  # not echoed: the value may be a secret
            raise errors.ConfigError(
                f"{key}: holds a control character (U+{ord(bad.group()):04X} at position "
                f"{bad.start() + 1}); write the value on one line, in plain characters"
            )
        return text

    def optional_string(self, value: Any, key: str) -> str | None:
        return None if value is None else self.string(value, key)


def mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.ConfigError(f"{key}: expected a mapping of keys, got {kind(value)}")
    return value


def only_keys(doc: Mapping[str, Any], key: str, allowed: set[str]) -> None:
    for name in doc:
        if name not in allowed:
            where = f"{key}.{cut(name)}" if key else cut(name)
            raise errors.ConfigError(
                f"{where}: unknown key (expected one of: {', '.join(sorted(allowed))})"
            )


def choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise errors.ConfigError(
            f"{key}: expected one of {', '.join(choices)}, got {quoted(value)}"
        )
    return str(value)


def integer(value: Any, key: str, minimum: int, maximum: int = MAX_INTEGER) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ConfigError(f"{key}: expected a whole number, got {quoted(value)}")
    if value < minimum:
        raise errors.ConfigError(f"{key}: must be at least {minimum}, got {quoted(value)}")
    if value > maximum:
        raise errors.ConfigError(f"{key}: must be at most {maximum}, got {quoted(value)}")
    return value


def number(value: Any, key: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ConfigError(f"{key}: expected a number, got {quoted(value)}")
    if not minimum <= value <= maximum:
        raise errors.ConfigError(
            f"{key}: must be between {minimum:g} and {maximum:g}, got {quoted(value)}"
        )
    return float(value)


def duration(value: Any, key: str) -> dt.timedelta:
    """``500ms``, ``30s``, ``10m``, ``24h``, ``30d`` or a bare number of seconds, at most
    MAX_DURATION (a longer one would overflow the dates computed from it)."""
    try:
        text = str(value) if isinstance(value, bool | int | float) else value
    except ValueError:  # an int of more than 4,300 digits
        text = None
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise errors.ConfigError(f"{key}: expected a duration like 20s, got {quoted(value)}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise errors.ConfigError(f"{key}: must be at most {MAX_DURATION.days}d")
    return dt.timedelta(seconds=seconds)


def positive_duration(value: Any, key: str, default: dt.timedelta) -> dt.timedelta:
    if value is None:
        return default
    parsed = duration(value, key)
    if parsed <= dt.timedelta(0):
        raise errors.ConfigError(f"{key}: must be longer than 0s")
    return parsed


def rate(value: Any, key: str) -> float | None:
    """Requests per second from ``10/s``, ``300/m`` or ``5000/h``; None for no limit."""
    if value is None:
        return None
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or not 0 < float(match.group(1)) < 1e9:
        raise errors.ConfigError(f"{key}: expected a rate like 10/s or 300/m, got {quoted(value)}")
    return float(match.group(1)) / _UNIT_SECONDS[match.group(2)]


def kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
