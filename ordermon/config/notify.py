"""The `notify:` section: PostgreSQL NOTIFY and signed webhooks for order events."""

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
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


def parse(document: Any, env: Mapping[str, str]) -> NotifyConfig:
    """The `notify:` section; one ConfigError listing all its errors."""
    problems = validate.Problems()
    config = collect(document, env, problems)
    problems.raise_any()
    return config


def collect(document: Any, env: Mapping[str, str], problems: validate.Problems) -> NotifyConfig:
    """The `notify:` section, every error noted in ``problems`` (a key in error takes its
    default)."""
    check = problems.check
    doc = problems.section(document, "notify", {f.name for f in dataclasses.fields(NotifyConfig)})
    default = NotifyConfig()
    read = validate.Reader(env)
    channel = doc.get("pg_channel", default.pg_channel)
    if channel is not None:
        channel = check(lambda: _channel(read.string(channel, "notify.pg_channel")), None)
    include_pin = doc.get("include_pin", False)
    if not isinstance(include_pin, bool):
        problems.add("notify.include_pin: expected true or false")
        include_pin = False

    def count(name: str, value: int) -> int:
        return check(lambda: validate.integer(doc.get(name, value), f"notify.{name}", 1), value)

    def duration(name: str, value: dt.timedelta) -> dt.timedelta:
        key = f"notify.{name}"
        return check(lambda: validate.positive_duration(doc.get(name), key, value), value)

    config = NotifyConfig(
        pg_channel=channel,
        include_pin=include_pin,
        max_attempts=count("max_attempts", default.max_attempts),
        retry_base_delay=duration("retry_base_delay", default.retry_base_delay),
        retry_max_delay=duration("retry_max_delay", default.retry_max_delay),
        concurrency=count("concurrency", default.concurrency),
        time_budget=duration("time_budget", default.time_budget),
        webhooks=_webhooks(doc.get("webhooks", []), read, problems),
    )
    shorter = config.retry_max_delay < config.retry_base_delay
    if shorter and problems.clean("notify.retry_base_delay", "notify.retry_max_delay"):
        problems.add(
            f"notify.retry_max_delay: {validate.seconds(config.retry_max_delay)} must not be "
            f"shorter than retry_base_delay ({validate.seconds(config.retry_base_delay)})"
        )
    return config


def _channel(channel: str) -> str:
    if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", channel):
        raise errors.ConfigError(
            "notify.pg_channel: use lower-case letters, digits and _ (a PostgreSQL name)"
        )
    return channel


def _webhooks(
    document: Any, read: validate.Reader, problems: validate.Problems
) -> tuple[Webhook, ...]:
    if not isinstance(document, list):
        problems.add("notify.webhooks: expected a list of webhooks")
        return ()
    webhooks: list[Webhook] = []
    for index, item in enumerate(document):
        if problems.full():
            break
        key = f"notify.webhooks[{index}]"
        webhook = _webhook(item, key, read, problems)
        if webhook is None:
            continue
        named = problems.clean(f"{key}.name")
        if named and any(w.name == webhook.name for w in webhooks):
            problems.add(f"{key}.name: {validate.quoted(webhook.name)} is used twice")
        webhooks.append(webhook)
    return tuple(webhooks)


def _webhook(
    document: Any, key: str, read: validate.Reader, problems: validate.Problems
) -> Webhook | None:
    check = problems.check
    if not isinstance(document, dict):
        problems.add(f"{key}: expected a mapping of keys, got {validate.kind(document)}")
        return None
    doc = problems.section(document, key, {"name", "url", "secret", "events", "timeout"})
    url = check(lambda: read.string(doc.get("url"), f"{key}.url"), "")
    if url and not url.startswith(("http://", "https://")):
        problems.add(f"{key}.url: expected an http:// or https:// URL")
    events = doc.get("events", list(EVENT_TYPES))
    if not isinstance(events, list) or not events:
        problems.add(f"{key}.events: expected a list of event types")
        events = []
    for index, event in enumerate(events):
        where = f"{key}.events[{index}]"
        check(lambda: validate.choice(event, where, EVENT_TYPES), None)  # noqa: B023 - called at once
    secret = check(lambda: read.string(doc.get("secret"), f"{key}.secret"), "")
    if secret and len(secret) < 16:
        problems.add(f"{key}.secret: use at least 16 characters")
    name = check(lambda: read.string(doc.get("name"), f"{key}.name"), "")
    if name and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
        problems.add(f"{key}.name: use letters, digits, '.', '_' or '-' only (at most 64)")
    five = dt.timedelta(seconds=5)
    timeout = check(
        lambda: validate.positive_duration(doc.get("timeout"), f"{key}.timeout", five), five
    )
    return Webhook(
        name=name, url=url, secret=secret, events=tuple(events), timeout=timeout.total_seconds()
    )
