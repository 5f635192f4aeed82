"""The `notify:` section: PostgreSQL NOTIFY and signed webhooks for order events."""

import dataclasses
import datetime as dt
import re
from typing import Any

from ordermon import errors
from ordermon.config import validate

EVENT_TYPES = ("order.completed", "order.failed", "order.expired", "order.superseded")


@dataclasses.dataclass(frozen=True)
class Webhook:
    name: str
    url: str = dataclasses.field(repr=False)
    secret: str = dataclasses.field(repr=False)
    events: tuple[str, ...] = EVENT_TYPES
    timeout: float = 5.0


@dataclasses.dataclass(frozen=True)
class NotifyConfig:
    pg_channel: str | None = "ordermon_events"
    include_pin: bool = False
    webhooks: tuple[Webhook, ...] = ()
    max_attempts: int = 12
    retry_base_delay: dt.timedelta = dt.timedelta(seconds=10)
    retry_max_delay: dt.timedelta = dt.timedelta(hours=1)
    concurrency: int = 4
    time_budget: dt.timedelta = dt.timedelta(seconds=20)


def parse(document: Any, env: Any) -> NotifyConfig:
    doc = validate.mapping(document, "notify")
    keys = {f.name for f in dataclasses.fields(NotifyConfig)}
    validate.only_keys(doc, "notify", keys)
    default = NotifyConfig()
    read = validate.Reader(env)
    channel = doc.get("pg_channel", default.pg_channel)
    if channel is not None:
        channel = read.string(channel, "notify.pg_channel")
        if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", channel):
            raise errors.ConfigError(
                "notify.pg_channel: use lower-case letters, digits and _ (a PostgreSQL name)"
            )
    include_pin = doc.get("include_pin", False)
    if not isinstance(include_pin, bool):
        raise errors.ConfigError("notify.include_pin: expected true or false")
    hooks_doc = doc.get("webhooks", [])
    if not isinstance(hooks_doc, list):
        raise errors.ConfigError("notify.webhooks: expected a list of webhooks")
    webhooks = tuple(
        _webhook(item, f"notify.webhooks[{i}]", read) for i, item in enumerate(hooks_doc)
    )
    names = [w.name for w in webhooks]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise errors.ConfigError(
                f"notify.webhooks[{index}].name: {validate.quoted(name)} is used twice"
            )
    config = NotifyConfig(
        pg_channel=channel,
        include_pin=include_pin,
        webhooks=webhooks,
        max_attempts=validate.integer(
            doc.get("max_attempts", default.max_attempts), "notify.max_attempts", 1
        ),
        retry_base_delay=validate.positive_duration(
            doc.get("retry_base_delay"), "notify.retry_base_delay", default.retry_base_delay
        ),
        retry_max_delay=validate.positive_duration(
            doc.get("retry_max_delay"), "notify.retry_max_delay", default.retry_max_delay
        ),
        concurrency=validate.integer(
            doc.get("concurrency", default.concurrency), "notify.concurrency", 1
        ),
        time_budget=validate.positive_duration(
            doc.get("time_budget"), "notify.time_budget", default.time_budget
        ),
    )
    if config.retry_max_delay < config.retry_base_delay:
        raise errors.ConfigError(
            "notify.retry_max_delay: must not be shorter than retry_base_delay"
        )
    return config


def _webhook(document: Any, key: str, read: validate.Reader) -> Webhook:
    doc = validate.mapping(document, key)
    validate.only_keys(doc, key, {"name", "url", "secret", "events", "timeout"})
    url = read.string(doc.get("url"), f"{key}.url")
    if not url.startswith(("http://", "https://")):
        raise errors.ConfigError(f"{key}.url: expected an http:// or https:// URL")
    events = doc.get("events", list(EVENT_TYPES))
    if not isinstance(events, list) or not events:
        raise errors.ConfigError(f"{key}.events: expected a list of event types")
    for index, event in enumerate(events):
        validate.choice(event, f"{key}.events[{index}]", EVENT_TYPES)
    secret = read.string(doc.get("secret"), f"{key}.secret")
    if len(secret) < 16:
        raise errors.ConfigError(f"{key}.secret: use at least 16 characters")
    name = read.string(doc.get("name"), f"{key}.name")
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
        raise errors.ConfigError(
            f"{key}.name: use letters, digits, '.', '_' or '-' only (at most 64)"
        )
    return Webhook(
        name=name,
        url=url,
        secret=secret,
        events=tuple(events),
        timeout=validate.positive_duration(
            doc.get("timeout"), f"{key}.timeout", dt.timedelta(seconds=5)
        ).total_seconds(),
    )
