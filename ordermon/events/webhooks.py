"""Delivering order events to webhooks: signed POSTs, retried with backoff, dead after the
configured number of attempts, a concurrency and a time budget per run so a slow receiver
never starves order checks. At least once: the event id is the receiver's idempotency key.

A receiver verifies ``X-Ordermon-Signature: sha256=HEX`` as HMAC-SHA256 with the shared
secret over ``TIMESTAMP + "." + BODY`` (``X-Ordermon-Timestamp``, the raw request body)."""

import concurrent.futures
import datetime as dt
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any

from ordermon import config, db
from ordermon.config import notify as notify_config
from ordermon.events import outbox
from ordermon.sweep import schedule

Clock = Callable[[], dt.datetime]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def deliver(conn: db.Connection, cfg: config.Config, clock: Clock) -> outbox.DeliveryReport:
    """Deliver what is due, within notify.time_budget."""
    notify = cfg.notify
    report = outbox.DeliveryReport()
    if not notify.webhooks:
        return report
    import requests

    started = time.monotonic()
    hooks = {w.name: w for w in notify.webhooks}
    for hook in notify.webhooks:
        outbox.materialize(conn, hook, clock())
    session = requests.Session()
    session.trust_env = False
    # A batch is two rounds of requests at most; a run that dies leaves its claims for this
    # long before another run sends them again.
    lease = dt.timedelta(seconds=max(w.timeout for w in notify.webhooks) * 3 + 5)
    policy = schedule.Policy(
        base_delay=notify.retry_base_delay, max_delay=notify.retry_max_delay, factor=2.0, jitter=0.1
    )
    with concurrent.futures.ThreadPoolExecutor(notify.concurrency, "ordermon-webhook") as pool:
        while time.monotonic() - started < notify.time_budget.total_seconds():
            now = clock()
            with conn.transaction():
                batch = outbox.claim(conn, list(hooks), notify.concurrency * 2, now, now + lease)
            if not batch:
                break
            results = pool.map(lambda d: _post(session, hooks[d.webhook], d), batch)
            for delivery, (status, error) in zip(batch, results, strict=True):
                _record(conn, notify, policy, delivery, status, error, clock(), report)
    session.close()
    return report


def _post(
    session: Any, hook: notify_config.Webhook, delivery: outbox.Delivery
) -> tuple[int | None, str | None]:
    import requests

    body = body_of(delivery.payload)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ordermon",
        "X-Ordermon-Event-Id": str(delivery.event_id),
        "X-Ordermon-Event-Type": delivery.type,
        "X-Ordermon-Timestamp": timestamp,
        "X-Ordermon-Signature": sign(hook.secret, timestamp, body),
    }
    try:
        response = session.post(
            hook.url, data=body, headers=headers, timeout=hook.timeout, allow_redirects=False
        )
        response.close()
    except requests.Timeout:
        return None, f"timed out after {hook.timeout:g}s"
    except requests.RequestException as exc:
        return None, f"request failed ({type(exc).__name__})"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def _record(
    conn: db.Connection,
    notify: notify_config.NotifyConfig,
    policy: schedule.Policy,
    delivery: outbox.Delivery,
    status: int | None,
    error: str | None,
    now: dt.datetime,
    report: outbox.DeliveryReport,
) -> None:
    if error is None:
        outbox.finish(
            conn,
            delivery,
            state="delivered",
            status=status,
            error=None,
            next_attempt_at=None,
            now=now,
        )
        report.delivered += 1
    elif delivery.attempts >= notify.max_attempts:
        outbox.finish(
            conn, delivery, state="dead", status=status, error=error, next_attempt_at=None, now=now
        )
        report.dead += 1
    else:
        pause = schedule.backoff(delivery.attempts, policy, random.uniform(-1, 1))
        outbox.finish(
            conn,
            delivery,
            state="pending",
            status=status,
            error=error,
            next_attempt_at=now + pause,
            now=now,
        )
        report.retried += 1
