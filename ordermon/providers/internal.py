"""internal: another shop on the same platform acting as our provider. Comma-separated ids of
our own orders (``uuid=1``), ``api-token`` and ``X-Tenant-Host`` headers, a JSON array reply.
See shared/providers.md."""

from collections.abc import Sequence
from typing import Any

from ordermon.providers import barakat, base, http, replies

WORDS = {
    "approved": "completed",
    "rejected": "failed",
    "pending": "processing",
    "sent": "processing",
}


def parse(
    status: int, body: bytes, references: Sequence[str], *, truncated: bool = False
) -> dict[str, base.Answer]:
    """What a reply means for each order asked about. Pure; never raises."""
    failure = http.request_failure(status, truncated)
    document = replies.load(body) if failure is None else None
    if failure is None and not isinstance(document, list):
        failure = base.error("reply is not a JSON array")
    if failure is not None:
        return dict.fromkeys(references, failure)
    assert isinstance(document, list)
    wanted = set(references)
    items: dict[str, list[base.Answer]] = {}
    for item in document:
        if isinstance(item, dict):
            key = replies.text(item.get("externalOrderId"))
            if key in wanted:
                items.setdefault(key, []).append(_answer(item))
    # The other shop may not have created its child order yet: retried and counted, never
    # taken as an answer.
    missing = "missing from the other shop's reply"
    return {ref: replies.agreed(items.get(ref, ()), missing) for ref in references}


def _answer(item: dict[str, Any]) -> base.Answer:
    raw = item.get("status")
    outcome = WORDS.get(replies.word(raw) or "")
    if outcome is None:
        return base.unknown_word(raw)
    note = item.get("note")
    message = note.strip() if isinstance(note, str) and note.strip() else None
    return base.finished(base.Outcome(outcome), item.get("pin"), message)


class Internal(http.HttpAdapter):
    pin_keys = ("pin",)
    probe_reference = "00000000-0000-0000-0000-000000000000"

    def request(self, references: Sequence[str]) -> http.Request:
        return http.Request(
            self.config.base_url + self.config.path,
            params={"orders": ",".join(references), "uuid": "1"},
            headers={
                "api-token": self.config.token or "",
                "X-Tenant-Host": self.config.tenant_host or "",
            },
        )

    def parse(
        self, status: int, body: bytes, truncated: bool, references: Sequence[str]
    ) -> dict[str, base.Answer]:
        return parse(status, body, references, truncated=truncated)

    def trouble(self, status: int, body: bytes) -> base.Trouble | None:
        return barakat.unauthorized(body) or base.http_trouble(status)
