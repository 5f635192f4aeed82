"""Small checks for configuration values; every error names the key path and exits 2."""

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from ordermon import errors

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")


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
                    f"{key}: environment variable {name} is not set (referenced as ${{{name}}})"
                )
            self.substituted.append(self.env[name])
            return self.env[name]

        text = _ENV_VAR.sub(substitute, str(value))
        if not text.strip():
            raise errors.ConfigError(f"{key}: must not be empty")
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
            where = f"{key}.{name}" if key else str(name)
            raise errors.ConfigError(
                f"{where}: unknown key (expected one of: {', '.join(sorted(allowed))})"
            )


def choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise errors.ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def integer(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ConfigError(f"{key}: expected a whole number, got {value!r}")
    if value < minimum:
        raise errors.ConfigError(f"{key}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise errors.ConfigError(f"{key}: must be at most {maximum}, got {value}")
    return value


def number(value: Any, key: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ConfigError(f"{key}: expected a number, got {value!r}")
    if not minimum <= value <= maximum:
        raise errors.ConfigError(f"{key}: must be between {minimum:g} and {maximum:g}, got {value}")
    return float(value)


def duration(value: Any, key: str) -> dt.timedelta:
    """``500ms``, ``30s``, ``10m``, ``24h``, ``30d`` or a bare number of seconds."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int | float):
        value = str(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise errors.ConfigError(f"{key}: expected a duration like 20s, got {value!r}")
    return dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


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
    if match is None or float(match.group(1)) <= 0:
        raise errors.ConfigError(f"{key}: expected a rate like 10/s or 300/m, got {value!r}")
    return float(match.group(1)) / _UNIT_SECONDS[match.group(2)]


def kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
