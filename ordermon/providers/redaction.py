"""Secrets and PINs out of everything ordermon keeps or shows of a reply.

A secret is found in every form a provider may echo it in: plain, URL-encoded (any case, ``+``
for a space) and JSON-escaped (``\\/``, ``\\u0061``), each character independently. An excerpt
is redacted whole, then cut: a JSON reply is decoded, its PIN fields masked wherever they are
(a batch reply holds other customers' PINs), secrets removed from every string, then
re-encoded compactly; any other reply is redacted as text. Pure functions."""

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ordermon.providers import text

MASK = "***"
EXCERPT_BYTES = 300
PIN_ECHO_MIN = 4  # a shorter PIN echoed in a message is left: masking it would mangle the text
# How much of a non-JSON reply is looked at: the excerpt and then some, so that an escaped
# secret or a PIN field straddling the cut is still seen whole by the redactor.
_TEXT_WINDOW = EXCERPT_BYTES + text.PARSED_CHARS
_JSON_SHORT = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}

MaskText = Callable[[str], tuple[str, set[str]]]


def _hex(digits: str) -> str:
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in digits)


def _forms(char: str) -> str:
    """A pattern for one character of a secret, in each of its encodings."""
    code = ord(char)
    if code < 0x10000:
        unicode_escape = r"\\u" + _hex(f"{code:04x}")
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        unicode_escape = r"\\u" + _hex(f"{high:04x}") + r"\\u" + _hex(f"{low:04x}")
    forms = [re.escape(char), unicode_escape]
    forms.append("".join("%" + _hex(f"{byte:02x}") for byte in char.encode("utf-8", "replace")))
    if char in _JSON_SHORT:
        forms.append(re.escape(_JSON_SHORT[char]))
    if char == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


class Redactor:
    """Replaces every configured secret, in any of its encoded forms, with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        patterns = ("".join(_forms(char) for char in secret) for secret in unique)
        self._pattern = re.compile("|".join(patterns)) if unique else None

    def __call__(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern is not None else value


def hide_pins(value: str, pins: Iterable[str]) -> str:
    """``value`` with every PIN long enough to be told apart from ordinary text masked, as
    written or as JSON or `text.storable` would write it."""
    forms: set[str] = set()
    for pin in pins:
        if len(pin) >= PIN_ECHO_MIN:
            forms.add(pin)
            if not pin.isprintable() or '"' in pin or "\\" in pin:
                forms.update((json.dumps(pin, ensure_ascii=False)[1:-1], _storable(pin)))
    for form in sorted(forms, key=len, reverse=True):
        if form in value:
            value = value.replace(form, MASK)
    return value


def excerpt(
    body: bytes,
    redact: Redactor,
    *,
    pin_keys: Iterable[str] = (),
    pin_paths: Sequence[str] = (),
    mask_text: MaskText | None = None,
) -> str:
    """At most EXCERPT_BYTES of storable text, redacted before it is cut. ``pin_keys`` are
    masked anywhere in a JSON reply, ``pin_paths`` (dotted) where they point; ``mask_text``
    masks the PIN fields of a text reply and says which PINs it saw."""
    keys = frozenset(key.casefold() for key in pin_keys)
    pins: set[str] = set()
    whole = _json_masked(body, keys, pin_paths, pins) if mask_text is None else None
    if whole is None:
        whole = body.decode("utf-8", errors="replace")
        if mask_text is not None:
            whole, seen = mask_text(whole)
            pins.update(seen)
        whole = _mask_json_like(whole, keys, pins)

    def finish(part: str) -> str:
        # storable first: its escapes could spell a secret ("\t" then "ok" reads "\tok")
        return hide_pins(redact(_storable(part)), pins)

    window = whole[:_TEXT_WINDOW]
    done = finish(window)
    if len(window) < len(whole) and len(done.encode("utf-8")) < _TEXT_WINDOW // 2:
        # So much was redacted that the end of the window, which may hold half a secret,
        # could come into the excerpt: do it all.
        done = finish(whole)
    return text.cut_bytes(text.storable(done, EXCERPT_BYTES), EXCERPT_BYTES)


def _storable(value: str) -> str:
    return text.storable(value, 4 * len(value) + 1)  # an escape is at most four characters


def _json_masked(
    body: bytes, keys: frozenset[str], paths: Sequence[str], pins: set[str]
) -> str | None:
    """The JSON reply with its PIN fields masked, encoded compactly; None if not JSON."""
    try:
        document = json.loads(body.decode("utf-8"))
        for path in paths:
            document = _mask_path(document, path.split("."), pins)
        document = _mask_keys(document, keys, pins)
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _is_placeholder(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip(" \t\r\n") in ("", "-"))


def _masked(value: Any, pins: set[str]) -> Any:
    """What a PIN field shows in an excerpt (a placeholder stays: it tells there was none)."""
    if _is_placeholder(value):
        return value
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        pins.add(str(value).strip())
    return MASK


def _mask_path(document: Any, parts: list[str], pins: set[str]) -> Any:
    head, rest = parts[0], parts[1:]
    if isinstance(document, dict) and head in document:
        document[head] = (
            _mask_path(document[head], rest, pins) if rest else _masked(document[head], pins)
        )
    elif isinstance(document, list) and head.lstrip("-").isdigit():
        index = int(head)
        if -len(document) <= index < len(document):
            inner = document[index]
            document[index] = _mask_path(inner, rest, pins) if rest else _masked(inner, pins)
    return document


def _mask_keys(document: Any, keys: frozenset[str], pins: set[str]) -> Any:
    if isinstance(document, dict):
        return {
            key: _masked(value, pins) if key.casefold() in keys else _mask_keys(value, keys, pins)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [_mask_keys(value, keys, pins) for value in document]
    return document


_STRING = r'"(?:[^"\\]|\\.)*(?:"|$)'
_FLAT = rf'(?:{_STRING}|[^\[\]{{}}"])'  # a string or any character but a bracket
# An array or object (two levels deep; a PIN nested deeper in a reply that does not decode
# is beyond a pattern), possibly cut off.
_CONTAINER = rf"[\[{{](?:[\[{{]{_FLAT}*[\]}}]?|{_FLAT})*[\]}}]?"


def _mask_json_like(window: str, keys: frozenset[str], pins: set[str]) -> str:
    """PIN fields of a reply that does not decode (cut off, or with a raw NUL): ``"pin": ...``
    as JSON would write it, up to the next separator."""
    if not keys:
        return window
    names = "|".join(re.escape(key) for key in sorted(keys))
    value = rf"{_STRING}|{_CONTAINER}|[^,}}\]\s]+"
    pattern = re.compile(rf'("(?i:{names})"\s*:\s*)({value})', re.DOTALL)

    def mask(match: re.Match[str]) -> str:
        value = match.group(2)
        inner = value.strip('"')
        if _is_placeholder(inner) or value == "null":
            return match.group(0)
        pins.add(inner.strip())
        return match.group(1) + '"' + MASK + '"'

    return pattern.sub(mask, window)
