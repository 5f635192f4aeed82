"""The `json` kind: a provider with no adapter of its own, described in the config: the
request (method, URL template, headers) and where in the JSON reply the status word, PIN and
message are, with the map of status words to outcomes. Anything unmapped is an error."""

import urllib.parse
from collections.abc import Sequence
from typing import Any

from ordermon.config import providers as provider_config
from ordermon.providers import barakat, base, http, replies


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path (``data.items.0.status``), or None."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else None
        else:
            return None
    return value


def parse(
    spec: provider_config.JsonSpec, status: int, body: bytes, *, truncated: bool = False
) -> base.Answer:
    """What a reply means, by the config's description. Pure; never raises."""
    failure = http.request_failure(status, truncated)
    if failure is not None:
        return failure
    document = replies.load(body)
    if not replies.is_json(document):
        return base.error("reply is not JSON")
    raw = lookup(document, spec.status_path)
    word = replies.text(raw) if not isinstance(raw, str) else raw.strip(" ")
    outcome = dict(spec.statuses).get(word or "")
    if outcome is None:
        return base.unknown_word(raw, "unmapped status", spec.status_path)
    pin = lookup(document, spec.pin_path) if spec.pin_path else None
    message = replies.text(lookup(document, spec.message_path)) if spec.message_path else None
    return base.finished(base.Outcome(outcome), pin, message)


class Generic(http.HttpAdapter):
    def __init__(self, provider: provider_config.ProviderConfig, pool_size: int = 10) -> None:
        super().__init__(provider, pool_size)
        # "Authorization: Bearer TOKEN": a provider echoing the token alone must not show it
        # either, so the credentials after an auth scheme are a secret of their own.
        schemes = (value.partition(" ")[2].strip() for _, value in self._spec.headers)
        extra = [credentials for credentials in schemes if len(credentials) >= 8]
        if extra:
            self.redact = base.Redactor([*provider.secrets, *extra])
        path = self._spec.pin_path
        self.pin_paths = (path,) if path else ()
        # The PIN's own key is masked wherever else it turns up in a reply, too.
        last = (path or "").rsplit(".", 1)[-1]
        self.pin_keys = (last,) if last and not last.lstrip("-").isdigit() else ()

    def request(self, references: Sequence[str]) -> http.Request:
        [reference] = references
        spec = self._spec
        return http.Request(
            spec.url.replace("{reference}", urllib.parse.quote(reference, safe="")),
            headers=dict(spec.headers),
            method=spec.method,
        )

    def parse(
        self, status: int, body: bytes, truncated: bool, references: Sequence[str]
    ) -> dict[str, base.Answer]:
        return {references[0]: parse(self._spec, status, body, truncated=truncated)}

    def trouble(self, status: int, body: bytes) -> base.Trouble | None:
        return barakat.unauthorized(body) or base.http_trouble(status)

    @property
    def _spec(self) -> provider_config.JsonSpec:
        assert self.config.json is not None
        return self.config.json
