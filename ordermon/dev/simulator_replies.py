"""What the simulated providers send, byte for byte as shared/providers.md describes, for each
scripted step. Kind-neutral steps (``processing``, ``completed[:PIN]``, ``failed``,
``unknown``, ``word:WORD``, ``missing``) become each kind's own reply; request-level faults
replace the whole reply whatever the kind."""

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

TEN_MB = 10 * 1024 * 1024
REQUEST_FAULTS = (
    "http500",
    "429",
    "503",
    "401",
    "garbage",
    "empty",
    "truncated",
    "badutf8",
    "huge",
    "endless",
    "hang",
    "slow",
    "raw",
    "request_error",
)
_HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    endless: bool = False
    content_type: str = "application/json"


def split(step: str) -> tuple[str, str]:
    name, _, argument = step.partition(":")
    return name, argument


def is_fault(step: str) -> bool:
    return split(step)[0] in REQUEST_FAULTS


def fault(step: str, kind: str) -> Reply:
    """A request-level reply: the same whatever the orders asked about."""
    name, argument = split(step)
    if name == "slow":
        seconds, _, inner = argument.partition(":")
        return dataclasses.replace(fault_or_none(inner, kind), delay=float(seconds))
    if name == "hang":
        return Reply(200, b"", delay=float(argument or 30))
    replies = {
        "http500": Reply(500, b"<html>Internal Server Error</html>", content_type="text/html"),
        "401": Reply(401, b'{"error": "UNAUTHORIZED"}'),
        "garbage": Reply(200, _HTML, content_type="text/html"),
        "empty": Reply(200, b""),
        "truncated": Reply(200, b'{"status": "OK", "data": [{"order_id": "12'),
        "badutf8": Reply(200, b'{"status": "OK", "data": [{"order_id": "\xff\xfe"}]}'),
        "huge": Reply(200, b"x" * TEN_MB),
        "endless": Reply(200, b"", endless=True),
        "raw": Reply(200, argument.encode(), content_type="text/plain"),
        "request_error": Reply(200, "3|Hatalı istek".encode(), content_type="text/plain"),
    }
    if name in ("429", "503"):
        return Reply(int(name), b"slow down", (("Retry-After", argument or "60"),))
    return replies[name]


def fault_or_none(step: str, kind: str) -> Reply:
    """``slow:S:STEP`` wraps any step: a fault, or an answer (built later, per kind)."""
    if is_fault(step):
        return fault(step, kind)
    return Reply(200, b"", headers=(("X-Step", step),))


def znet(step: str) -> Reply:
    name, argument = split(step)
    text = {
        "processing": "OK|1| - |İşlem bekleniyor",
        "processing-blank": "OK|1| |İşlem bekleniyor",
        "failed": "OK|3| |İptal edildi",
        "unknown": "OK|7| |Bilinmeyen durum",
        "missing": "",
        "word": f"OK|{argument}| |?",
    }.get(name)
    if name == "completed":
        text = f"OK|2|{argument or ' - '}|Teslim edildi"
    if text is None:
        raise ValueError(f"unknown simulator step {step!r}")
    return Reply(200, text.encode(), content_type="text/plain; charset=utf-8")


_BARAKAT_WORDS = {"processing": "wait", "completed": "accept", "failed": "reject"}
_INTERNAL_WORDS = {"processing": "pending", "completed": "approved", "failed": "rejected"}
_JSON_WORDS = {"processing": "IN_PROGRESS", "completed": "DELIVERED", "failed": "CANCELLED"}


def _word(step: str, words: dict[str, str]) -> tuple[str, str | None]:
    name, argument = split(step)
    if name == "word":
        return argument, None
    if name == "unknown":
        return "mystery", None
    if name not in words:
        raise ValueError(f"unknown simulator step {step!r}")
    return words[name], (argument or None) if name == "completed" else None


def barakat(steps: dict[str, str], uuid_call: bool, extra: bool) -> Reply:
    data: list[dict[str, Any]] = []
    for reference, step in steps.items():
        if split(step)[0] == "missing":
            continue
        word, pin = _word(step, _BARAKAT_WORDS)
        item: dict[str, Any] = {"order_id": reference, "status": word, "note": f"note {word}"}
        if uuid_call:
            item = {
                "order_id": f"P{abs(hash(reference)) % 10**8}",
                "order_uuid": reference,
                "status": word,
            }
        if pin:
            item["pin"] = pin
            item["replay_api"] = ["", "Teslim edildi"]
        data.append(item)
    if extra:
        data.append({"order_id": "not-asked-for", "status": "accept", "pin": "NOPE"})
    return Reply(200, json.dumps({"status": "OK", "data": data}).encode())


def internal(steps: dict[str, str], extra: bool) -> Reply:
    items: list[dict[str, Any]] = []
    for reference, step in steps.items():
        if split(step)[0] == "missing":
            continue
        word, pin = _word(step, _INTERNAL_WORDS)
        item = {
            "orderId": f"child-{reference}",
            "externalOrderId": reference,
            "status": word,
            "note": f"sister shop says {word}",
        }
        if pin:
            item["pin"] = pin
        items.append(item)
    if extra:
        items.append({"orderId": "x", "externalOrderId": "not-asked-for", "status": "approved"})
    return Reply(200, json.dumps(items).encode())


def generic(step: str) -> Reply:
    if split(step)[0] == "missing":
        return Reply(404, b'{"error": "not found"}')
    word, pin = _word(step, _JSON_WORDS)
    result: dict[str, Any] = {"state": word, "info": f"state {word}"}
    if pin:
        result["code"] = pin
    return Reply(200, json.dumps({"result": result}).encode())


def validate(steps: Sequence[str]) -> None:
    """Refuse a typo in a script at once, not at the first request."""
    for step in steps:
        name, argument = split(step)
        if name in ("slow", "hang") and argument:
            _seconds(argument.partition(":")[0], step)
        if name == "slow":
            validate([argument.partition(":")[2]])
        elif not is_fault(step) and name not in (
            "processing",
            "processing-blank",
            "completed",
            "failed",
            "unknown",
            "word",
            "missing",
        ):
            raise ValueError(f"unknown simulator step {step!r}")


# A delay a simulated reply may take: an hour is longer than any timeout worth trying.
MAX_DELAY = 3600.0


def _seconds(text: str, step: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{step!r}: expected seconds, got {text!r}") from None
    if not 0 <= seconds <= MAX_DELAY:  # NaN fails this too
        raise ValueError(f"{step!r}: seconds from 0 to {MAX_DELAY:g}")
    return seconds
