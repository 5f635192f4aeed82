"""znet (Turkish reseller panels): one GET per order, a plain-text ``OK|DURUM|PIN|ACIKLAMA``
reply. See shared/providers.md; every reply that is not exactly understood is an ``error``."""

from collections.abc import Sequence

from ordermon.providers import base, http

_DURUM = {
    "2": base.Outcome.COMPLETED,
    "1": base.Outcome.PROCESSING,
    "3": base.Outcome.FAILED,
}
EMPTY_REPLY = (
    "empty reply: unknown dealer code, API disabled, or this host's IP address is not on the "
    "provider's whitelist"
)


def parse(status: int, body: bytes, *, truncated: bool = False) -> base.Answer:
    """What a znet reply means. Pure; never raises."""
    failure = http.request_failure(status, truncated)
    if failure is not None:
        return failure
    try:
        text = body.replace(b"\x00", b"").decode("utf-8").strip()
    except UnicodeDecodeError:
        return base.error("reply is not valid UTF-8")
    if not text:
        return base.error(EMPTY_REPLY)
    fields = text.split("|", 3)
    if fields[0] != "OK":
        if fields[0].strip().isdigit() and len(fields) > 1:
            return base.error(f"request refused: {text[:200]}".rstrip())
        return base.error("unrecognised reply")
    if len(fields) < 4:
        return base.error("reply has fewer than four fields")
    durum, pin, description = fields[1].strip(), fields[2], fields[3].strip()
    outcome = _DURUM.get(durum)
    if outcome is None:
        return base.error(f"unknown status {durum[:20]!r}")
    return base.finished(outcome, pin, description or None)


class Znet(http.HttpAdapter):
    """``kod`` and ``sifre`` travel as query parameters, so every URL and every error is
    redacted before anyone sees it. No batch call exists: one request per order."""

    def request(self, references: Sequence[str]) -> http.Request:
        [reference] = references
        return http.Request(
            self.config.base_url + self.config.path,
            params={
                "kod": self.config.kod or "",
                "sifre": self.config.sifre or "",
                "tahsilat_api_islem_id": reference,
            },
        )

    def parse(
        self, status: int, body: bytes, truncated: bool, references: Sequence[str]
    ) -> dict[str, base.Answer]:
        return {references[0]: parse(status, body, truncated=truncated)}

    def trouble(self, status: int, body: bytes) -> base.Trouble | None:
        if status == 200 and not body.replace(b"\x00", b"").strip():
            return base.Trouble.CREDENTIALS  # znet's way of saying "who are you?"
        return base.http_trouble(status)
