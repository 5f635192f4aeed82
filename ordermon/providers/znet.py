"""znet (Turkish reseller panels): one GET per order, a plain-text ``OK|DURUM|PIN|ACIKLAMA``
reply. See shared/providers.md; every reply that is not exactly understood is an ``error``."""

from collections.abc import Sequence

from ordermon.providers import base, http, redaction

_DURUM = {
    "2": base.Outcome.COMPLETED,
    "1": base.Outcome.PROCESSING,
    "3": base.Outcome.FAILED,
}
_PADDING = " \t\r\n"
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
        # As sent: a NUL or control byte is not stripped (deleting the NULs of "O\0K|\03|"
        # once read a refusal into it); only the line's own padding is trimmed.
        text = body.decode("utf-8").strip(_PADDING)
    except UnicodeDecodeError:
        return base.error("reply is not valid UTF-8")
    if not text:
        return base.error(EMPTY_REPLY)
    fields = text.split("|", 3)
    if fields[0] != "OK":
        if fields[0].strip(" ").isdigit() and len(fields) > 1:
            return base.error(f"request refused: {text}".rstrip())  # cut once redacted
        return base.error("unrecognised reply")
    if len(fields) < 4:
        return base.error("reply has fewer than four fields")
    durum, pin, description = fields[1].strip(" "), fields[2], fields[3].strip()
    outcome = _DURUM.get(durum)
    if outcome is None:
        return base.unknown_word(durum)
    answer = base.finished(outcome, pin, description or None)
    if answer.outcome is not base.Outcome.ERROR and has_control(fields[3]):
        # One reply is one line: a second line ("OK|3| |..\r\nOK|2|PIN|..") or a control
        # byte in the message makes it contradict itself; never read from its first line.
        return base.error("the message holds a line break or control character")
    return answer


def has_control(text: str) -> bool:
    """A C0 control (tab aside) or DEL: what one line of plain text never holds."""
    return any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text)


def mask_pin_field(text: str) -> tuple[str, set[str]]:
    """The reply with its PIN field (the third) masked, for excerpts; and the PIN seen."""
    fields = text.split("|", 3)
    if len(fields) < 3 or base.is_no_pin(fields[2]):
        return text, set()
    pin = fields[2].strip(_PADDING)
    fields[2] = redaction.MASK
    return "|".join(fields), {pin}


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

    def excerpt(self, body: bytes) -> str:
        return base.excerpt(body, self.redact, mask_text=mask_pin_field)

    def trouble(self, status: int, body: bytes) -> base.Trouble | None:
        if status == 200 and not body.strip(_PADDING.encode()):
            return base.Trouble.CREDENTIALS  # znet's way of saying "who are you?"
        return base.http_trouble(status)
