"""barakat and apstore (one JSON protocol under two names): a batch check endpoint,
``GET {base_url}/client/api/check?orders=[id1,id2]`` with an ``api-token`` header.
See shared/providers.md."""

import logging
import re
from collections.abc import Sequence
from typing import Any

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
_PIN_KEYS = ("pin", "code", "voucher", "serial")
_MESSAGE_KEYS = ("note", "message", "desc", "text")


def is_uuid(reference: str) -> bool:
    """The shop's own order id (asked with uuid=1) rather than the provider's order id."""
    return bool(_UUID.match(reference))


def parse(
    status: int, body: bytes, references: Sequence[str], *, truncated: bool = False
) -> dict[str, base.Answer]:
    """What a reply means for each reference asked about. Pure; never raises."""
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
    items: dict[str, dict[str, Any]] = {}
    for item in data:
        if not isinstance(item, dict):
            continue
        key = replies.text(item.get("order_uuid")) if uuid_call else None
        key = key or replies.text(item.get("order_id"))
        if key not in wanted:
            log.info("ignored a reply item about an order not asked for")
            continue
        items.setdefault(key, item)
    return {ref: _answer(items.get(ref)) for ref in references}


def _answer(item: dict[str, Any] | None) -> base.Answer:
    if item is None:
        return base.error("missing from the provider's reply")
    raw = next((item[k] for k in _STATUS_KEYS if k in item and item[k] is not None), None)
    word = replies.word(raw)
    outcome = WORDS.get(word or "")
    if outcome is None:
        shown = str(raw)[:40] if raw is not None else "none"
        log.warning("unknown status word %r from a barakat-protocol provider", shown)
        return base.error(f"unknown status {shown!r}")
    return base.finished(base.Outcome(outcome), replies.first_text(item, _PIN_KEYS), _message(item))


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
