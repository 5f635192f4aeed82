"""Provider text made fit to store and to log: PostgreSQL refuses a NUL in text and jsonb, the
encoder refuses a lone surrogate, and a terminal obeys control characters. Pure functions."""

import re

MESSAGE_CHARS = 1000  # a stored message ("lastMessage" keeps 250 of it)
# What a parser keeps of provider text before secrets are redacted: far more than the final
# cut, so that no secret shorter than the margin can straddle a cut made before redaction.
PARSED_CHARS = 4 * MESSAGE_CHARS
LOG_CHARS = 80  # a provider's words quoted in a log line
_CUT = "…"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_REPLACEMENT = "\ufffd"
# C0 (NUL, BEL, ESC, ...), DEL and C1: Unicode's Cc; then the lone surrogates, Cs.
_UNSTORABLE = re.compile("([\x00-\x1f\x7f-\x9f]|[\ud800-\udfff])")


def _escaped(char: str) -> str:
    if "\ud800" <= char <= "\udfff":
        return _REPLACEMENT  # no UTF-8 for a lone surrogate
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def storable(value: str, limit: int = MESSAGE_CHARS) -> str:
    """``value`` with control characters escaped visibly (``\\x1b``), lone surrogates replaced,
    cut to at most ``limit`` characters, ending in an ellipsis when cut (an escape is never cut
    in half). Idempotent."""
    # Each character becomes at least one: nothing past limit + 1 can be kept.
    pieces = _UNSTORABLE.split(value[: limit + 1])  # text, a bad character, text, ...
    if len(pieces) == 1 and len(value) <= limit:
        return value  # the common case
    for index in range(1, len(pieces), 2):
        pieces[index] = _escaped(pieces[index])
    if len(value) <= limit and sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    room = max(limit - len(_CUT), 0)
    kept = []
    for index, piece in enumerate(pieces):
        if len(piece) > room:
            if index % 2 == 0:  # plain text may be cut anywhere; an escape may not
                kept.append(piece[:room])
            break
        kept.append(piece)
        room -= len(piece)
    return "".join(kept) + (_CUT if limit >= len(_CUT) else "")


def cut_bytes(value: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, never half a character."""
    return value.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def is_storable(value: str) -> bool:
    """No control character and no lone surrogate: what `storable` guarantees."""
    return _UNSTORABLE.search(value) is None
