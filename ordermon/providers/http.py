"""The part of every adapter that is HTTP: one session per provider (keep-alive, a pool as
large as its concurrency), the request, request-level failures, redaction and timing. A kind
only says how to build its request and how to read its reply."""

import dataclasses
import logging
import time
from collections.abc import Sequence

import requests
import requests.adapters

from ordermon import provider_config
from ordermon.providers import base, text

log = logging.getLogger("ordermon.providers")


@dataclasses.dataclass(frozen=True)
class Request:
    url: str
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    method: str = "GET"


class HttpAdapter:
    """Subclasses implement ``request`` and ``parse`` (and may refine ``trouble``)."""

    #: JSON keys that hold a PIN anywhere in a reply, and dotted paths to one: masked in
    #: excerpts (a batch reply holds other customers' PINs)
    pin_keys: tuple[str, ...] = ()
    pin_paths: tuple[str, ...] = ()

    #: a reference that no real order has, for `ordermon providers --probe`
    probe_reference = "0"

    def __init__(self, provider: provider_config.ProviderConfig, pool_size: int = 10) -> None:
        self.config = provider
        self.redact = base.Redactor(provider.secrets)
        self.session = requests.Session()
        # No proxy or netrc look-ups from the environment on every call (measured: about twice
        # the requests per second); a proxy is an explicit per-provider setting.
        self.session.trust_env = False
        if provider.proxy:
            self.session.proxies = {"http": provider.proxy, "https": provider.proxy}
        pool = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1))
        self.session.mount("http://", pool)
        self.session.mount("https://", pool)

    def plan(self, references: Sequence[str]) -> list[list[str]]:
        size = self.config.batch_size
        return [list(references[i : i + size]) for i in range(0, len(references), size)]

    def request(self, references: Sequence[str]) -> Request:
        raise NotImplementedError

    def parse(
        self, status: int, body: bytes, truncated: bool, references: Sequence[str]
    ) -> dict[str, base.Answer]:
        raise NotImplementedError

    def trouble(self, status: int, body: bytes) -> base.Trouble | None:
        return base.http_trouble(status)

    def check(self, references: Sequence[str]) -> dict[str, base.Check]:
        request = self.request(references)
        started = time.monotonic()
        try:
            reply = base.fetch(
                self.session,
                request.method,
                request.url,
                params=request.params,
                headers=request.headers,
                timeout=self.config.timeout,
                max_bytes=self.config.max_reply_bytes,
            )
        except base.TransportError as exc:
            failed = base.Check(
                base.error(self.redact(str(exc))),
                latency_ms=_elapsed_ms(started),
                trouble=base.Trouble.TRANSPORT,
            )
            return dict.fromkeys(references, failed)
        latency = _elapsed_ms(started)
        answers = self.parse(reply.status, reply.body, reply.truncated, references)
        trouble = self.trouble(reply.status, reply.body)
        excerpt = self.excerpt(reply.body)
        checks = {}
        unknown: dict[str, int] = {}
        for reference in references:
            answer = answers.get(reference) or base.error("no answer about this order")
            if answer.unknown_word is not None:
                unknown[answer.unknown_word] = unknown.get(answer.unknown_word, 0) + 1
            checks[reference] = base.Check(
                self.shown(answer),
                latency_ms=latency,
                http_status=reply.status,
                excerpt=excerpt,
                retry_after=reply.retry_after,
                trouble=trouble,
            )
        self._log_unknown_words(unknown)
        return checks

    def excerpt(self, body: bytes) -> str:
        """What of a reply is kept with each attempt: its PIN fields and secrets masked, then
        cut (a kind names its PIN fields with ``pin_keys`` and ``pin_paths``)."""
        return base.excerpt(body, self.redact, pin_keys=self.pin_keys, pin_paths=self.pin_paths)

    def shown(self, answer: base.Answer) -> base.Answer:
        """An answer as it may be stored and shown: its message redacted, then cut."""
        if not answer.message:
            return answer
        message = text.storable(self.redact(answer.message), text.MESSAGE_CHARS)
        return dataclasses.replace(answer, message=message)

    def _log_unknown_words(self, counts: dict[str, int]) -> None:
        """Each new word once per reply (a new word must be seen, not guessed): redacted,
        escaped and cut, since a provider may echo anything there, its token included."""
        for word, orders in counts.items():
            log.warning(
                "unknown status word '%s' from provider %s (%d order(s))",
                text.storable(self.redact(word), text.LOG_CHARS),
                self.config.name,
                orders,
            )

    def probe(self) -> base.Check:
        return self.check([self.probe_reference])[self.probe_reference]

    def close(self) -> None:
        self.session.close()


def request_failure(status: int, truncated: bool) -> base.Answer | None:
    """The request-level errors every kind reads the same way."""
    if truncated:
        return base.error("reply too large; cut off unread")
    if status != 200:
        return base.error(f"HTTP {status}")
    return None


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
