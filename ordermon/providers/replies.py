"""Reading JSON replies defensively: any bytes in, a value or None out, never an exception.
A reply is read as sent: nothing is stripped from it before it is parsed."""

import json
from collections.abc import Sequence
from typing import Any

from ordermon.providers import base

_NOT_JSON = object()
_PADDING = " \t\r\n"
TWICE = "the reply names this order twice, with different answers"


def load(body: bytes) -> Any:
    """The decoded JSON document, or ``NOT_JSON`` for anything that is not UTF-8 JSON (a raw
    control character inside a string is not JSON: json refuses it)."""
    try:
        return json.loads(
            body.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _NOT_JSON


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming one key twice ({"status": "accept", "status": "reject"}) says two
    things: json would keep the last without a word, so it is not an answer at all."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a key given twice")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's extension, not JSON


def is_json(value: Any) -> bool:
    return value is not _NOT_JSON


def text(value: Any) -> str | None:
    """A non-empty string (numbers count: ids come as both), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        stripped = str(value).strip(_PADDING)  # not str.strip(): it eats control characters
        return stripped or None
    return None


def first_given(item: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first key that holds anything but null or blank text, as sent (a
    wrong-typed value is returned too: it is an error, not a reason to look further)."""
    for key in keys:
        value = item.get(key)
        if value is None or (isinstance(value, str) and not value.strip(_PADDING)):
            continue
        return value
    return None


def word(value: Any) -> str | None:
    """A status word, spaces around it trimmed, compared case-insensitively as ASCII (no
    Unicode case folding: "o\u212a", with a Kelvin sign, is not "ok")."""
    if not isinstance(value, str) or not value.strip(" "):
        return None
    stripped = value.strip(" ")
    return stripped.lower() if stripped.isascii() else stripped


def agreed(answers: Sequence[base.Answer], missing: str) -> base.Answer:
    """The answer of the items a reply holds about one order: none is ``missing``; several
    must agree on the outcome and the PIN, else the reply contradicts itself."""
    if not answers:
        return base.error(missing)
    first = answers[0]
    if any((other.outcome, other.pin) != (first.outcome, first.pin) for other in answers[1:]):
        return base.error(TWICE)
    return first
