"""barakat and apstore (one JSON protocol under two names): a batch check endpoint,
``GET {base_url}/client/api/check?orders=[id1,id2]`` with an ``api-token`` header.
See shared/providers.md."""

import logging
import re
from collections.abc import Sequence
from typing import Any

from ordermon.config import human
from ordermon.providers import base, http, replies

log = logging.getLogger("ordermon.providers.barakat")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
WORDS = {
    **dict.fromkeys(("accept", "success", "ok", "done", "complete", "completed"), "completed"),
    **dict.fromkeys(("reject", "rejected", "failed", "fail", "cancelled", "canceled"), "failed"),
    **dict.fromkeys(
        ("wait", "pending", "processing", "inprogress", "queued", "queue"), "processing"
    ),
}
_STATUS_KEYS = ("status", "state", "orderStatus")
PIN_KEYS = ("pin", "code", "voucher", "serial")
_MESSAGE_KEYS = ("note", "message", "desc", "text")


def is_uuid(reference: str) -> bool:
    """The shop's own order id (asked with uuid=1) rather than the provider's order id."""
    return bool(_UUID.match(reference))


def parse(
    status: int, body: bytes, references: Sequence[str], *, truncated: bool = False
) -> dict[str, base.Answer]:
    """What a reply means for each reference asked about. Pure (but for counting ignored
    items in the log); never raises."""
    failure = http.request_failure(status, truncated)
    document = replies.load(body) if failure is None else None
    if failure is None and not replies.is_json(document):
        failure = base.error("reply is not JSON")
    if failure is None and not (isinstance(document, dict) and document.get("status") == "OK"):
        failure = base.error("reply status is not OK")
    data = document.get("data") if isinstance(document, dict) else None
    if failure is None and not isinstance(data, list):
        failure = base.error("reply has no data list")
    if failure is not None:
        return dict.fromkeys(references, failure)
    assert isinstance(data, list)
    uuid_call = bool(references) and is_uuid(references[0])
    wanted = set(references)
    items: dict[str, list[base.Answer]] = {}
    ignored = 0
    for item in data:
        if not isinstance(item, dict):
            continue
        key = replies.text(item.get("order_uuid")) if uuid_call else None
        key = key or replies.text(item.get("order_id"))
        if key not in wanted:
            ignored += 1
            continue
        items.setdefault(key, []).append(_answer(item))
    if ignored:
        log.info("ignored %s about orders not asked for", human.plural(ignored, "reply item"))
    missing = "missing from the provider's reply"
    return {ref: replies.agreed(items.get(ref, ()), missing) for ref in references}


def _answer(item: dict[str, Any]) -> base.Answer:
    raw = next((item[k] for k in _STATUS_KEYS if k in item and item[k] is not None), None)
    outcome = WORDS.get(replies.word(raw) or "")
    if outcome is None:
        return base.unknown_word(raw)
    pin = replies.first_given(item, PIN_KEYS)
    return base.finished(base.Outcome(outcome), pin, _message(item))


def _message(item: dict[str, Any]) -> str | None:
    replay = item.get("replay_api")
    if isinstance(replay, list):
        for entry in replay:
            if isinstance(entry, str) and entry.strip():
                return entry.strip()
    found = next(
        (
            item[k].strip()
            for k in _MESSAGE_KEYS
            if isinstance(item.get(k), str) and item[k].strip()
        ),
        None,
    )
    return found


class Barakat(http.HttpAdapter):
    pin_keys = PIN_KEYS

    def plan(self, references: Sequence[str]) -> list[list[str]]:
        """uuid=1 is decided per id: a mixed batch becomes two kinds of calls."""
        uuids = [r for r in references if is_uuid(r)]
        others = [r for r in references if not is_uuid(r)]
        return super().plan(others) + super().plan(uuids)

    def request(self, references: Sequence[str]) -> http.Request:
        params = {"orders": "[" + ",".join(references) + "]"}
        if references and is_uuid(references[0]):
            params["uuid"] = "1"
        return http.Request(
            self.config.base_url + self.config.path,
            params=params,
            headers={"api-token": self.config.token or ""},
        )

    def parse(
        self, status: int, body: bytes, truncated: bool, references: Sequence[str]
    ) -> dict[str, base.Answer]:
        return parse(status, body, references, truncated=truncated)

    def trouble(self, status: int, body: bytes) -> base.Trouble | None:
        return unauthorized(body) or base.http_trouble(status)


def unauthorized(body: bytes) -> base.Trouble | None:
    """``{"error": "UNAUTHORIZED"}``, whatever the HTTP status: a credentials problem."""
    if b"UNAUTHORIZED" not in body:
        return None
    document = replies.load(body)
    if isinstance(document, dict) and document.get("error") == "UNAUTHORIZED":
        return base.Trouble.CREDENTIALS
    return None
