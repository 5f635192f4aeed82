"""The part of every adapter that is HTTP: one session per provider (keep-alive, a pool as
large as its concurrency), the request, request-level failures, redaction and timing. A kind
only says how to build its request and how to read its reply."""

import dataclasses
import time
from collections.abc import Sequence

import requests
import requests.adapters

from ordermon import provider_config
from ordermon.providers import base


@dataclasses.dataclass(frozen=True)
class Request:
    url: str
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    method: str = "GET"


class HttpAdapter:
    """Subclasses implement ``request`` and ``parse`` (and may refine ``trouble``)."""

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
        excerpt = base.excerpt(reply.body, self.redact)
        checks = {}
        for reference in references:
            answer = answers.get(reference) or base.error("no answer about this order")
            if answer.message:
                answer = dataclasses.replace(answer, message=self.redact(answer.message))
            checks[reference] = base.Check(
                answer,
                latency_ms=latency,
                http_status=reply.status,
                excerpt=excerpt,
                retry_after=reply.retry_after,
                trouble=trouble,
            )
        return checks

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
