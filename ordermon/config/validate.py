"""Small checks for configuration values; every error names the key path and exits 2.

A value or key echoed in a message goes through `quoted` or `cut`: at most about 60
characters, control characters escaped, so no config file makes a long or raw message."""

import datetime as dt
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ordermon import errors

T = TypeVar("T")

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
# A report lists at most this many errors, in at most about MAX_REPORT characters; the rest are
# counted ("and 9950 more"): a hostile file cannot flood the terminal or cron's mail.
MAX_ERRORS = 50
MAX_REPORT = 3500
# Shorter values from the environment are not hidden in errors: hiding "1" or "on" would
# garble every message, and such a value is no secret.
MIN_SECRET = 3


def quoted(value: Any) -> str:
    """``value`` as echoed in a message: its repr, cut to about ECHO characters with "…"."""
    try:
        text = repr(value[: ECHO + 1]) if isinstance(value, str) else _SHORT_REPR.repr(value)
    except ValueError:  # an int of more than 4,300 digits has no repr
        return "a number too long to show"
    return text if len(text) <= ECHO else text[:ECHO] + "…"


def seconds(duration: dt.timedelta) -> str:
    """A duration as a message shows it: ``90s``."""
    return f"{duration.total_seconds():g}s"


def cut(text: Any) -> str:
    """A key or word from the file as part of a message: escaped, at most about ECHO
    characters with "…"."""
    whole = str(text)
    shown = repr(whole[: ECHO + 1])[1:-1]
    return shown if len(shown) <= ECHO and len(whole) <= ECHO else shown[:ECHO] + "…"


class Problems:
    """Every error found in a config, so that one run reports them all. Each message starts
    with its key (``providers[0].sifre: ...``); a key with an error is remembered, so the
    checks that compare it with another key can wait until it can be read (`clean`). Past
    MAX_ERRORS, errors are only counted, and no such check runs any more: what a hostile file
    costs stays bounded."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.more = 0
        self._keys: set[str] = set()  # the keys in error
        self._above: set[str] = set()  # those keys and every key above them
        self.stopped = False  # entries of a list left unread: the list of errors was full

    def full(self) -> bool:
        """MAX_ERRORS errors found: a list's remaining entries need not be read (a file of
        100,000 broken providers would cost seconds more, to show nothing more)."""
        self.stopped = self.stopped or len(self.found) >= MAX_ERRORS
        return self.stopped

    def add(self, message: str) -> None:
        if len(self.found) >= MAX_ERRORS:
            self.more += 1
            return
        self.found.append(message)
        key = message.split(": ", 1)[0]
        self._keys.add(key)
        self._above.update(_and_above(key))

    def check(self, read: Callable[[], T], fallback: T) -> T:
        """What ``read`` returns, or ``fallback`` once its ConfigError is noted."""
        try:
            return read()
        except errors.ConfigError as exc:
            for problem in exc.problems:
                self.add(problem)
            self.more += exc.more
            return fallback

    def section(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        """The mapping at ``key`` ({} when it is not one), its unknown keys noted."""
        doc: dict[str, Any] = self.check(lambda: mapping(value, key), {})
        self.check(lambda: only_keys(doc, key, allowed), None)
        return doc

    def clean(self, *keys: str) -> bool:
        """No error at any of ``keys``, above them or below them (and the list not full)."""
        if self.more:
            return False
        return not any(
            key in self._above or any(k in self._keys for k in _and_above(key)) for key in keys
        )

    def raise_any(self, where: str = "the config", secrets: Iterable[str] = ()) -> None:
        """Raise the errors found, every value in ``secrets`` (what ``${VAR}`` stood for)
        hidden: a check that echoes a value cannot know it came from the environment."""
        if self.found:
            found = tuple(hide(problem, secrets) for problem in self.found)
            message = summary(found, self.more, where, stopped=self.stopped)
            raise errors.ConfigError(message, found, self.more)


def hide(message: str, secrets: Iterable[str]) -> str:
    # Longest first, so a secret inside another is not left half shown.
    for secret in sorted(set(secrets), key=len, reverse=True):
        shown = {secret, repr(secret)[1:-1]}  # as written, and as quoted() escapes it
        for form in sorted(shown, key=len, reverse=True):
            if len(form) >= MIN_SECRET:
                message = message.replace(form, "***")
    return message


def referenced(document: Any, env: Mapping[str, str]) -> set[str]:
    """The values the ``${VAR}``s anywhere in ``document`` stand for."""
    found: set[str] = set()
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            found.update(env[name] for name in _ENV_VAR.findall(value) if name in env)
    return found


_STEP = re.compile(r"[.\[]")


def _and_above(key: str) -> list[str]:
    """``providers[0].schedule``, ``providers[0]``, ``providers``: the key and its parents."""
    return [key[: m.start()] for m in _STEP.finditer(key) if m.start()] + [key]


def summary(problems: tuple[str, ...], more: int, where: str, stopped: bool = False) -> str:
    """One problem alone as its own line; several as a count, then one line each, at most
    MAX_ERRORS lines and about MAX_REPORT characters."""
    if len(problems) == 1 and not more and not stopped:
        return problems[0]
    lines, size = [], 0
    for problem in problems[:MAX_ERRORS]:
        size += len(problem) + 3
        if size > MAX_REPORT:
            break
        lines.append(f"  {problem}")
    hidden = len(problems) + more - len(lines)
    if stopped:
        at_least = "at least "
        tail = [f"  and at least {hidden} more (reading stopped after {MAX_ERRORS} errors)"]
    else:
        at_least = ""
        tail = [f"  and {hidden} more"] if hidden else []
    total = len(problems) + more
    return "\n".join([f"{where} has {at_least}{total} errors:", *lines, *tail])


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

        unset = [cut(name) for name in _ENV_VAR.findall(str(value)) if name not in self.env]
        if unset:
            every = list(dict.fromkeys(unset))  # each once
            names = every[:5]  # a hostile value names thousands
            if len(names) == 1:
                said = f"environment variable {names[0]} is not set"
            else:
                said = f"environment variables {', '.join(names)} are not set"
            others = f" and {len(every) - 5} more" if len(every) > 5 else ""
            refs = ", ".join("${" + name + "}" for name in names)
            raise errors.ConfigError(f"{key}: {said} (referenced as {refs}{others})")

        def substitute(match: re.Match[str]) -> str:
            self.substituted.append(self.env[match.group(1)])
            return self.env[match.group(1)]

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
    """Every key of ``doc`` is one of ``allowed``; else one problem per unknown key."""
    unknown = [name for name in doc if name not in allowed]
    if not unknown:
        return
    expected = ", ".join(sorted(allowed))
    problems = tuple(
        f"{key + '.' if key else ''}{cut(name)}: unknown key (expected one of: {expected})"
        for name in unknown[:MAX_ERRORS]
    )
    raise errors.ConfigError(problems[0], problems, max(len(unknown) - MAX_ERRORS, 0))


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
