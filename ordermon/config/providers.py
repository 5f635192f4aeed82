"""One configured provider: the keys every kind shares, each kind's own keys, and their checks."""

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ordermon import errors
from ordermon.config import jsonkind, validate
from ordermon.sweep import schedule

KINDS = ("znet", "barakat", "apstore", "internal", "json")
OUTCOME_WORDS = jsonkind.OUTCOME_WORDS
JsonSpec = jsonkind.JsonSpec
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
_FAILED = object()  # what a key in error reads as, where None is a value
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
    json: jsonkind.JsonSpec | None = None
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
    document: Any, key: str, default_policy: schedule.Policy, env: Mapping[str, str]
) -> ProviderConfig:
    """The provider ``document`` describes; one ConfigError listing all its errors."""
    problems = validate.Problems()
    provider = collect(document, key, default_policy, env, problems)
    problems.raise_any()
    assert provider is not None
    return provider


def collect(
    document: Any,
    key: str,
    default_policy: schedule.Policy,
    env: Mapping[str, str],
    problems: validate.Problems,
) -> ProviderConfig | None:
    """The provider ``document`` describes, every error noted in ``problems`` (a key in error
    takes a stand-in value); None when it is not a mapping at all."""
    check = problems.check
    if not isinstance(document, dict):
        problems.add(f"{key}: expected a mapping of keys, got {validate.kind(document)}")
        return None
    doc: dict[str, Any] = document
    read = validate.Reader(env)
    provider_id = check(lambda: read.string(doc.get("id"), f"{key}.id"), "")
    name = check(lambda: read.string(doc.get("name"), f"{key}.name"), "")
    kind = check(lambda: validate.choice(doc.get("kind"), f"{key}.kind", KINDS), "")
    # An unknown kind: the keys of every kind are allowed, and none of them is read.
    kind_keys = _KIND_KEYS[kind] if kind else set().union(*_KIND_KEYS.values())
    check(lambda: validate.only_keys(doc, key, _COMMON | kind_keys), None)

    def text(field: str, default: str | None = None, kinds: tuple[str, ...] = ()) -> str:
        """The string at ``field``; "" when in error, or when ``kinds`` do not have it."""
        if kinds and kind not in kinds:
            return ""
        return check(lambda: read.string(doc.get(field, default), f"{key}.{field}"), "")

    twenty = _seconds(20)
    timeout = check(
        lambda: validate.positive_duration(doc.get("timeout"), f"{key}.timeout", twenty), twenty
    )
    batch_default = 50 if kind in ("barakat", "apstore", "internal") else 1
    batch_size = check(
        lambda: validate.integer(
            doc.get("batch_size", batch_default), f"{key}.batch_size", 1, _MAX_BATCH.get(kind, 1)
        ),
        batch_default,
    )
    max_concurrency = doc.get("max_concurrency")
    if max_concurrency is not None:
        max_concurrency = check(
            lambda: validate.integer(max_concurrency, f"{key}.max_concurrency", 1), None
        )
    spec = jsonkind.spec(doc, key, read, problems) if kind == "json" else None
    base_url = ""
    if spec is not None:
        base_url = check(lambda: _base_of(spec.url, f"{key}.url"), "")
    elif kind and kind != "json":
        base_url = text("base_url")
        base_url = check(lambda: _url(base_url, f"{key}.base_url"), "") if base_url else ""
    proxy = None
    if doc.get("proxy") is not None:
        proxy = check(lambda: _url(read.string(doc["proxy"], f"{key}.proxy"), f"{key}.proxy"), None)
    provider = ProviderConfig(
        id=provider_id,
        name=name,
        kind=kind,
        base_url=base_url.rstrip("/"),
        timeout=timeout.total_seconds(),
        max_reply_bytes=check(
            lambda: validate.integer(
                doc.get("max_reply_bytes", 65536), f"{key}.max_reply_bytes", 256
            ),
            65536,
        ),
        policy=policy(doc.get("schedule", {}), f"{key}.schedule", default_policy, problems),
        max_concurrency=max_concurrency,
        rate_limit=check(lambda: validate.rate(doc.get("rate_limit"), f"{key}.rate_limit"), None),
        batch_size=batch_size,
        pause=_pause(doc.get("pause", {}), f"{key}.pause", problems),
        proxy=proxy,
        path="/" + text("path", _DEFAULT_PATH.get(kind, "/client/api/check")).lstrip("/"),
        kod=text("kod", kinds=("znet",)) or None,
        sifre=text("sifre", kinds=("znet",)) or None,
        token=text("token", kinds=("barakat", "apstore", "internal")) or None,
        tenant_host=text("tenant_host", kinds=("internal",)) or None,
        json=spec,
        env_secrets=tuple(read.substituted),
    )
    if problems.clean(f"{key}.name") and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", provider.name):
        problems.add(
            f"{key}.name: use letters, digits, '.', '_' or '-' only (at most 64), got "
            f"{validate.quoted(provider.name)}"
        )
    if len(provider.id) > 255:  # "providerId" is a varchar(255): a longer id matches nothing
        problems.add(f"{key}.id: must be at most 255 characters")
    return provider


def policy(
    document: Any, key: str, base: schedule.Policy, problems: validate.Problems
) -> schedule.Policy:
    check = problems.check
    doc = problems.section(document, key, {f.name for f in dataclasses.fields(schedule.Policy)})
    changes: dict[str, Any] = {}

    def change(name: str, read: Callable[[Any, str], Any]) -> None:
        if name in doc:
            value = check(lambda: read(doc[name], f"{key}.{name}"), _FAILED)
            if value is not _FAILED:
                changes[name] = value

    for name in (
        "first_check_after",
        "base_delay",
        "max_delay",
        "give_up_after",
        "window",
        "request_cost",
        "min_delay",
        "refresh_every",
        "stale_after",
    ):
        change(name, validate.duration)
    change("mode", lambda value, where: validate.choice(value, where, schedule.MODES))
    change("window_orders", lambda value, where: validate.integer(value, where, 1, 100_000))
    change("min_samples", lambda value, where: validate.integer(value, where, 1, 100_000))
    change("explore", lambda value, where: validate.number(value, where, 0.0, 0.5))
    change("factor", lambda value, where: validate.number(value, where, 1.0, 100.0))
    change("jitter", lambda value, where: validate.number(value, where, 0.0, 0.99))
    change(
        "max_attempts",
        lambda value, where: None if value is None else validate.integer(value, where, 1),
    )
    policy = dataclasses.replace(base, **changes)

    def clean(*names: str) -> bool:  # those keys read here, and where inherited, unfaulted
        return problems.clean(*(f"{at}.{name}" for name in names for at in (key, "schedule")))

    # Each check against another key runs when its own keys were read, so that one mistake
    # elsewhere in the section does not hide it until the next run. The learned keys are
    # checked against each other only where they are used (a backoff config with a max_delay
    # under the default min_delay stays valid); a mode that could not be read counts as
    # learned when it was given, so its keys' mistakes are told in the same run.
    learned = policy.learned or ("mode" in doc and not clean("mode"))
    if clean("max_delay", "base_delay") and policy.max_delay < policy.base_delay:
        problems.add(
            f"{key}.max_delay: {validate.seconds(policy.max_delay)} must not be shorter "
            f"than base_delay ({validate.seconds(policy.base_delay)})"
        )
    if clean("give_up_after") and policy.give_up_after <= dt.timedelta(0):
        problems.add(f"{key}.give_up_after: must be longer than 0s")
    if learned and clean("max_delay", "min_delay") and policy.max_delay < policy.min_delay:
        problems.add(
            f"{key}.max_delay: {validate.seconds(policy.max_delay)} must not be shorter "
            f"than min_delay ({validate.seconds(policy.min_delay)})"
        )
    for name in ("window", "refresh_every", "stale_after"):
        if clean(name) and getattr(policy, name) <= dt.timedelta(0):
            problems.add(f"{key}.{name}: must be longer than 0s")
    stale, refresh = policy.stale_after, policy.refresh_every
    if learned and clean("stale_after", "refresh_every") and stale < refresh:
        problems.add(
            f"{key}.stale_after: {validate.seconds(stale)} must not be "
            f"shorter than refresh_every ({validate.seconds(refresh)})"
        )
    return policy


def _pause(document: Any, key: str, problems: validate.Problems) -> PausePolicy:
    check = problems.check
    doc = problems.section(document, key, {"after_failures", "cooldown", "max_cooldown"})
    default = PausePolicy()

    def duration(name: str, value: dt.timedelta) -> dt.timedelta:
        read = validate.positive_duration
        return check(lambda: read(doc.get(name), f"{key}.{name}", value), value)

    pause = PausePolicy(
        after_failures=check(
            lambda: validate.integer(
                doc.get("after_failures", default.after_failures), f"{key}.after_failures", 1
            ),
            default.after_failures,
        ),
        cooldown=duration("cooldown", default.cooldown),
        max_cooldown=duration("max_cooldown", default.max_cooldown),
    )
    shorter = pause.max_cooldown < pause.cooldown
    if shorter and problems.clean(f"{key}.cooldown", f"{key}.max_cooldown"):
        problems.add(
            f"{key}.max_cooldown: {validate.seconds(pause.max_cooldown)} must not be shorter "
            f"than cooldown ({validate.seconds(pause.cooldown)})"
        )
    return pause


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
