"""Reading JSON replies defensively: any bytes in, a value or None out, never an exception."""

import json
from typing import Any

_NOT_JSON = object()


def load(body: bytes) -> Any:
    """The decoded JSON document, or ``NOT_JSON`` for anything that is not UTF-8 JSON."""
    try:
        return json.loads(body.replace(b"\x00", b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _NOT_JSON


def is_json(value: Any) -> bool:
    return value is not _NOT_JSON


def text(value: Any) -> str | None:
    """A non-empty string (numbers count: ids and PINs come as both), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        stripped = str(value).strip()
        return stripped or None
    return None


def first_text(item: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        found = text(item.get(key))
        if found is not None:
            return found
    return None


def word(value: Any) -> str | None:
    """A status word, compared case-insensitively."""
    return value.strip().lower() if isinstance(value, str) and value.strip() else None
