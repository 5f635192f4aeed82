"""What a provider's reply means, read as providers.md and DESIGN.md define it, written
apart from ordermon (it shares no code with it). Where the documents leave a choice (an id sent
as a number, a PIN with odd spacing, a message holding control characters), an ``error`` is
allowed as well: a meaning is the set of readings a correct ordermon may take."""

import dataclasses
import json
import re
import unicodedata
from typing import Any

Meaning = tuple[str, str | None]  # ("completed", PIN or None) | (outcome, None)
ERROR: Meaning = ("error", None)
FAILED: Meaning = ("failed", None)
PROCESSING: Meaning = ("processing", None)
RAW_NUL, BAD_UTF8 = "@@RAWNUL@@", "@@BADUTF8@@"  # raw bytes, put in after JSON encoding
MARKERS = {RAW_NUL.encode(): b"\x00", BAD_UTF8.encode(): b"\xff\xfe"}
BARAKAT_WORDS = {
    **dict.fromkeys(("accept", "success", "ok", "done", "complete", "completed"), "completed"),
    **dict.fromkeys(("reject", "rejected", "failed", "fail", "cancelled", "canceled"), "failed"),
    **dict.fromkeys(
        ("wait", "pending", "processing", "inprogress", "queued", "queue"), "processing"
    ),
}
ZNET_DURUM = {"1": "processing", "2": "completed", "3": "failed"}


def bad_chars(text: str) -> bool:
    """Control characters, NUL and lone surrogates: what no PIN may hold."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text) or RAW_NUL in text


def _completed(pin: str | None) -> Meaning:
    return ("completed", pin)


def pin_meanings(value: Any, kind: str) -> set[Meaning]:
    """What a completed answer carrying this PIN value may be taken as."""
    if value is None:
        return {_completed(None)}
    if isinstance(value, int) and not isinstance(value, bool):
        return {_completed(str(value)), ERROR}  # numbers: the documents are silent
    if not isinstance(value, str):
        return {ERROR}  # a PIN of the wrong JSON type is never an approval without it
    padded = value.strip(" \t\r\n")  # providers.md: whitespace around a real PIN is trimmed
    if bad_chars(value) and padded and not bad_chars(padded) and BAD_UTF8 not in padded:
        return {ERROR} if len(padded) > 120 else {ERROR, _completed(padded)}
    if bad_chars(value) or BAD_UTF8 in value:
        return {ERROR}
    core = value.strip(" ")
    if re.fullmatch(r"-? *", core):
        return (
            {_completed(None)}
            if kind == "znet" or not core
            else {_completed(None), _completed("-")}
        )
    if len(core) > 120:
        return {ERROR}
    if core.isprintable() and core == core.strip():
        return {_completed(core)} | ({ERROR} if core != value else set())
    choices = {ERROR, _completed(core)}
    stripped = value.strip()
    if stripped and len(stripped) <= 120:
        choices.add(_completed(None if re.fullmatch(r"-?", stripped) else stripped))
    return choices


def znet_meaning(status: int, body: bytes) -> frozenset[Meaning]:
    """A znet reply, read as providers.md writes it: OK|DURUM|PIN|ACIKLAMA, exact bytes."""
    fields = body.split(b"|", 3)
    if status != 200 or len(fields) < 4:
        return frozenset({ERROR})
    try:
        head, durum, pin = (field.decode("utf-8") for field in fields[:3])
    except UnicodeDecodeError:
        return frozenset({ERROR})
    loose: set[Meaning] = set()
    message = fields[3].decode("utf-8", errors="replace").rstrip("\r\n")
    if bad_chars(message) or "\ufffd" in message:
        loose.add(ERROR)  # text to store is cleaned or the answer is an error: both fine
    if head != "OK":
        if head.lstrip(" \r\n") != "OK":
            return frozenset({ERROR})
        loose.add(ERROR)
    outcome = ZNET_DURUM.get(durum)
    if outcome is None and ZNET_DURUM.get(durum.strip(" ")):
        outcome = ZNET_DURUM[durum.strip(" ")]
        loose.add(ERROR)
    if outcome is None:
        return frozenset({ERROR})
    if outcome == "completed":
        return frozenset(pin_meanings(pin, "znet") | loose)
    return frozenset({(outcome, None)} | ({ERROR} if bad_chars(pin) else set()) | loose)


@dataclasses.dataclass(frozen=True)
class Item:
    """One element of a barakat reply's data list, naming ``about`` in the way ``id_form``
    says (exact, int, spaced, or unasked: an id nobody asked about)."""

    about: str
    id_form: str
    doc: tuple[tuple[str, Any], ...]

    def render(self) -> dict[str, Any]:
        ids = {"exact": self.about, "int": int(self.about), "spaced": f" {self.about} "}
        return {"order_id": ids.get(self.id_form, "not-asked-for"), **dict(self.doc)}

    @property
    def poisons(self) -> bool:
        """Raw bytes that make the whole body invalid (strictly, an error for every order)."""
        return any(m in json.dumps(dict(self.doc)) for m in (RAW_NUL, BAD_UTF8))

    def meaning(self) -> set[Meaning]:
        doc = dict(self.doc)
        word = next((doc[k] for k in ("status", "state", "orderStatus") if k in doc), None)
        outcome = BARAKAT_WORDS.get(word) if isinstance(word, str) else None
        loose: set[Meaning] = set()
        if outcome is None and isinstance(word, str):
            outcome = BARAKAT_WORDS.get(word.strip(" ").lower())
            loose.add(ERROR)
        if outcome is None:
            return {ERROR}
        pins = [doc[k] for k in ("pin", "code", "voucher", "serial") if k in doc]
        pin = next((p for p in pins if p not in (None, "")), None)
        texts = [v for k, v in doc.items() if k in ("note", "message", "desc", "text")]
        texts += [v for v in doc.get("replay_api") or [] if isinstance(v, str)]
        if any(isinstance(t, str) and (bad_chars(t) or BAD_UTF8 in t) for t in texts):
            loose.add(ERROR)
        if outcome == "completed":
            return pin_meanings(pin, "barakat") | loose
        clean = pin is None or (isinstance(pin, str) and not bad_chars(pin) and BAD_UTF8 not in pin)
        return {(outcome, None)} | loose | (set() if clean else {ERROR})


def barakat_meaning(items: list[Item], reference: str) -> frozenset[Meaning]:
    """What a well-formed reply says about one order asked for: its items must agree."""
    strict = [i.meaning() for i in items if i.about == reference and i.id_form == "exact"]
    loose = [i.meaning() for i in items if i.about == reference and i.id_form in ("int", "spaced")]
    allowed: set[Meaning] = set()
    for taken in range(2 ** len(loose)):
        found = strict + [m for n, m in enumerate(loose) if taken >> n & 1]
        if not found:
            allowed.add(ERROR)  # missing from the reply
        elif len(found) == 1:
            allowed |= found[0]
        else:
            allowed |= {ERROR} | set.intersection(*found)
    return frozenset(allowed)
