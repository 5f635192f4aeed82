"""One configured provider: the keys every kind shares, each kind's own keys, and their checks."""

import dataclasses
import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit

from ordermon import errors
from ordermon.config import validate
from ordermon.sweep import schedule

KINDS = ("znet", "barakat", "apstore", "internal", "json")
OUTCOME_WORDS = ("completed", "failed", "processing")
_COMMON = {
    "id",
    "name",
    "kind",
    "timeout",
    "max_concurrency",
    "rate_limit",
    "batch_size",
    "max_reply_bytes",
    "schedule",
    "pause",
    "proxy",
}
_KIND_KEYS = {
    "znet": {"base_url", "path", "kod", "sifre"},
    "barakat": {"base_url", "path", "token"},
    "apstore": {"base_url", "path", "token"},
    "internal": {"base_url", "path", "token", "tenant_host"},
    "json": {"url", "method", "headers", "status_path", "pin_path", "message_path", "statuses"},
}
_DEFAULT_PATH = {"znet": "/servis/pin_kontrol.php"}
# The most ids one request may carry, by kind (internal: the other shop's limit).
_MAX_BATCH = {"znet": 1, "json": 1, "internal": 50, "barakat": 500, "apstore": 500}


@dataclasses.dataclass(frozen=True)
class PausePolicy:
    """When a failing provider is paused, and for how long (the circuit breaker)."""

    after_failures: int = 5
    cooldown: dt.timedelta = dt.timedelta(minutes=1)
    max_cooldown: dt.timedelta = dt.timedelta(minutes=30)

    def cooldown_for(self, pauses: int) -> dt.timedelta:
        """The pause after ``pauses`` earlier pauses in a row: doubling, capped."""
        factor: int = 2 ** min(max(pauses, 0), 30)
        longer: dt.timedelta = self.cooldown * factor
        return min(longer, self.max_cooldown)


@dataclasses.dataclass(frozen=True)
class JsonSpec:
    """The `json` kind: request and reply described entirely in the config."""

    method: str
    url: str = dataclasses.field(repr=False)
    headers: tuple[tuple[str, str], ...] = dataclasses.field(repr=False)
    status_path: str
    pin_path: str | None
    message_path: str | None
    statuses: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class ProviderConfig:
    id: str
    name: str
    kind: str
    base_url: str
    timeout: float
    max_reply_bytes: int
    policy: schedule.Policy
    max_concurrency: int | None = None
    rate_limit: float | None = None
    batch_size: int = 1
    pause: PausePolicy = PausePolicy()
    proxy: str | None = dataclasses.field(default=None, repr=False)
    path: str = "/client/api/check"
    kod: str | None = None
    sifre: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    tenant_host: str | None = None
    json: JsonSpec | None = None
    env_secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be logged, stored or printed."""
        values = [self.sifre, self.token, *self.env_secrets]
        if self.json is not None:
            values.extend(value for _, value in self.json.headers)
        if self.proxy and urlsplit(self.proxy).password:
            values.append(urlsplit(self.proxy).password)
        return tuple(v for v in values if v and len(v) >= 3)


# The keys that carry each kind's credentials, the likeliest culprit first.
_CREDENTIAL_KEYS = {
    "znet": ("sifre", "kod"),
    "barakat": ("token",),
    "apstore": ("token",),
    "internal": ("token", "tenant_host"),
}


def credential_keys(provider: ProviderConfig) -> tuple[str, ...]:
    """The config keys (under the provider's own) to check when its credentials are refused:
    names only, never their values."""
    if provider.json is not None:
        names = tuple(f"headers.{name}" for name, _ in provider.json.headers)
        return names or ("headers",)
    return _CREDENTIAL_KEYS.get(provider.kind, ())


def credential_hint(provider: ProviderConfig, index: int) -> str:
    """``providers[1].sifre and providers[1].kod``: where to look when ``providers[index]``'s
    credentials are refused."""
    keys = [f"providers[{index}].{key}" for key in credential_keys(provider)]
    return " and ".join(keys) or f"the credentials of providers[{index}]"


def parse(
    document: Any, key: str, default_policy: schedule.Policy, env: dict[str, str] | Any
) -> ProviderConfig:
    doc = validate.mapping(document, key)
    read = validate.Reader(env)
    kind = validate.choice(doc.get("kind"), f"{key}.kind", KINDS)
    validate.only_keys(doc, key, _COMMON | _KIND_KEYS[kind])
    timeout = validate.positive_duration(doc.get("timeout"), f"{key}.timeout", _seconds(20))
    batch_default = 50 if kind in ("barakat", "apstore", "internal") else 1
    batch_size = validate.integer(
        doc.get("batch_size", batch_default), f"{key}.batch_size", 1, _MAX_BATCH[kind]
    )
    max_concurrency = doc.get("max_concurrency")
    if max_concurrency is not None:
        max_concurrency = validate.integer(max_concurrency, f"{key}.max_concurrency", 1)
    spec = _json_spec(doc, key, read) if kind == "json" else None
    if spec is not None:
        base_url = _base_of(spec.url, f"{key}.url")
    else:
        base_url = _url(read.string(doc.get("base_url"), f"{key}.base_url"), f"{key}.base_url")
    provider = ProviderConfig(
        id=read.string(doc.get("id"), f"{key}.id"),
        name=read.string(doc.get("name"), f"{key}.name"),
        kind=kind,
        base_url=base_url.rstrip("/"),
        timeout=timeout.total_seconds(),
        max_reply_bytes=validate.integer(
            doc.get("max_reply_bytes", 65536), f"{key}.max_reply_bytes", 256
        ),
        policy=policy(doc.get("schedule", {}), f"{key}.schedule", default_policy),
        max_concurrency=max_concurrency,
        rate_limit=validate.rate(doc.get("rate_limit"), f"{key}.rate_limit"),
        batch_size=batch_size,
        pause=_pause(doc.get("pause", {}), f"{key}.pause"),
        proxy=_url(read.string(doc["proxy"], f"{key}.proxy"), f"{key}.proxy")
        if doc.get("proxy") is not None
        else None,
        path="/"
        + read.string(
            doc.get("path", _DEFAULT_PATH.get(kind, "/client/api/check")), f"{key}.path"
        ).lstrip("/"),
        kod=read.string(doc.get("kod"), f"{key}.kod") if kind == "znet" else None,
        sifre=read.string(doc.get("sifre"), f"{key}.sifre") if kind == "znet" else None,
        token=read.string(doc.get("token"), f"{key}.token")
        if kind in ("barakat", "apstore", "internal")
        else None,
        tenant_host=read.string(doc.get("tenant_host"), f"{key}.tenant_host")
        if kind == "internal"
        else None,
        json=spec,
        env_secrets=tuple(read.substituted),
    )
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", provider.name):
        raise errors.ConfigError(
            f"{key}.name: use letters, digits, '.', '_' or '-' only (at most 64), got "
            f"{validate.quoted(provider.name)}"
        )
    if len(provider.id) > 255:  # "providerId" is a varchar(255): a longer id matches nothing
        raise errors.ConfigError(f"{key}.id: must be at most 255 characters")
    return provider


def policy(document: Any, key: str, base: schedule.Policy) -> schedule.Policy:
    doc = validate.mapping(document, key)
    validate.only_keys(doc, key, {f.name for f in dataclasses.fields(schedule.Policy)})
    changes: dict[str, Any] = {}
    for name in ("first_check_after", "base_delay", "max_delay", "give_up_after"):
        if name in doc:
            changes[name] = validate.duration(doc[name], f"{key}.{name}")
    if "factor" in doc:
        changes["factor"] = validate.number(doc["factor"], f"{key}.factor", 1.0, 100.0)
    if "jitter" in doc:
        changes["jitter"] = validate.number(doc["jitter"], f"{key}.jitter", 0.0, 0.99)
    if "max_attempts" in doc:
        attempts = doc["max_attempts"]
        changes["max_attempts"] = (
            None if attempts is None else validate.integer(attempts, f"{key}.max_attempts", 1)
        )
    policy = dataclasses.replace(base, **changes)
    if policy.max_delay < policy.base_delay:
        raise errors.ConfigError(f"{key}.max_delay: must not be shorter than base_delay")
    if policy.give_up_after <= dt.timedelta(0):
        raise errors.ConfigError(f"{key}.give_up_after: must be longer than 0s")
    return policy


def _pause(document: Any, key: str) -> PausePolicy:
    doc = validate.mapping(document, key)
    validate.only_keys(doc, key, {"after_failures", "cooldown", "max_cooldown"})
    default = PausePolicy()
    pause = PausePolicy(
        after_failures=validate.integer(
            doc.get("after_failures", default.after_failures), f"{key}.after_failures", 1
        ),
        cooldown=validate.positive_duration(
            doc.get("cooldown"), f"{key}.cooldown", default.cooldown
        ),
        max_cooldown=validate.positive_duration(
            doc.get("max_cooldown"), f"{key}.max_cooldown", default.max_cooldown
        ),
    )
    if pause.max_cooldown < pause.cooldown:
        raise errors.ConfigError(f"{key}.max_cooldown: must not be shorter than cooldown")
    return pause


def _json_spec(doc: dict[str, Any], key: str, read: validate.Reader) -> JsonSpec:
    url = read.string(doc.get("url"), f"{key}.url")
    if "{reference}" not in url:
        raise errors.ConfigError(f"{key}.url: must contain {{reference}} where the id goes")
    headers_doc = validate.mapping(doc.get("headers", {}), f"{key}.headers")
    headers = tuple(
        (str(name), read.string(value, f"{key}.headers.{validate.cut(name)}"))
        for name, value in headers_doc.items()
    )
    statuses_doc = validate.mapping(doc.get("statuses"), f"{key}.statuses")
    if not statuses_doc:
        raise errors.ConfigError(f"{key}.statuses: map at least one status word to an outcome")
    statuses = tuple(
        (str(word), validate.choice(outcome, f"{key}.statuses.{validate.cut(word)}", OUTCOME_WORDS))
        for word, outcome in statuses_doc.items()
    )
    return JsonSpec(
        method=validate.choice(doc.get("method", "GET"), f"{key}.method", ("GET", "POST")),
        url=url,
        headers=headers,
        status_path=read.string(doc.get("status_path"), f"{key}.status_path"),
        pin_path=read.optional_string(doc.get("pin_path"), f"{key}.pin_path"),
        message_path=read.optional_string(doc.get("message_path"), f"{key}.message_path"),
        statuses=statuses,
    )


def _url(value: str, key: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        # The value itself is not echoed: a URL may carry a password.
        raise errors.ConfigError(f"{key}: expected an http:// or https:// URL")
    return value


def _base_of(url_template: str, key: str) -> str:
    _url(url_template, key)
    parts = urlsplit(url_template.replace("{reference}", "x"))
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)
