"""`ordermon providers`: each configured provider with its kind, address (no secrets),
limits, pause state and recent error rate; ``--probe`` sends each one harmless request."""

import dataclasses
import datetime as dt
from typing import Any

import psycopg.errors

from ordermon import config, db, providers
from ordermon.config import human
from ordermon.config import providers as provider_config
from ordermon.providers import base
from ordermon.sweep import health


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    kind: str
    base_url: str
    limits: dict[str, Any]
    state: str
    checks_last_hour: int | None
    error_rate_last_hour: float | None
    probe: str | None = None
    probe_ok: bool | None = None
    # mode, samples, p50_s, p90_s (learned, seconds) and what places the checks now, why
    schedule: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rows(
    cfg: config.Config, conn: db.Connection | None, now: dt.datetime, *, probe: bool = False
) -> list[Row]:
    states = health.load(conn, [p.id for p in cfg.providers]) if conn is not None else {}
    rates = _error_rates(conn, now) if conn is not None else {}
    summaries = _summaries(conn, cfg) if conn is not None else {}
    result = []
    for index, provider in enumerate(cfg.providers):
        redact = base.Redactor(provider.secrets)
        checks, errors_ = rates.get(provider.id, (0, 0)) if conn is not None else (None, None)
        probe_text, probe_ok = _probe(provider, index) if probe else (None, None)
        result.append(
            Row(
                name=provider.name,
                kind=provider.kind,
                base_url=redact(db.redact_url(provider.base_url)),
                limits={
                    "timeout_s": provider.timeout,
                    "max_concurrency": cfg.concurrency_of(provider),
                    "rate_limit_per_s": provider.rate_limit,
                    "batch_size": provider.batch_size,
                },
                state=_state(states.get(provider.id), now, cfg.timezone)
                if conn is not None
                else "unknown",
                checks_last_hour=checks,
                error_rate_last_hour=(errors_ / checks if checks else 0.0)
                if checks is not None and errors_ is not None
                else None,
                probe=probe_text,
                probe_ok=probe_ok,
                schedule=_schedule(provider, summaries, now, conn is not None),
            )
        )
    return result


def _summaries(conn: db.Connection, cfg: config.Config) -> dict[str, dict[str, Any]]:
    """The learned providers' stored summaries; none before `ordermon migrate` made their
    table (each learned provider then says backoff: nothing learned yet)."""
    from ordermon.sweep import models

    learned = [p.id for p in cfg.providers if p.policy.learned]
    if not learned:
        return {}
    try:
        with conn.transaction():
            return models.load(conn, learned)
    except psycopg.errors.UndefinedTable:
        return {}


def _schedule(
    provider: provider_config.ProviderConfig,
    summaries: dict[str, dict[str, Any]],
    now: dt.datetime,
    connected: bool,
) -> dict[str, Any]:
    """The provider's schedule mode and, when learned, what was learned and what is in use."""
    policy = provider.policy
    if not policy.learned:
        return {"mode": policy.mode, "in_use": "backoff"}
    from ordermon.sweep import models

    if not connected:
        return {"mode": policy.mode, "in_use": "unknown", "why": "no database"}
    row = summaries.get(provider.id)
    choice = models.choose(provider, row, now)
    summary = choice.summary or (models.checked(row) if row is not None else None)
    return {
        "mode": policy.mode,
        "in_use": "learned" if choice.plan is not None else "backoff",
        "why": choice.note,
        "samples": summary.samples if summary else 0,
        "p50_s": summary.quantile(0.5) if summary else None,
        "p90_s": summary.quantile(0.9) if summary else None,
        "computed_at": human.iso(row["computed_at"], "UTC")
        if row is not None and row["computed_at"] is not None
        else None,
    }


def _state(state: health.State | None, now: dt.datetime, zone: str) -> str:
    if state is None:
        return "ok"
    if state.paused(now):
        assert state.paused_until is not None
        return f"paused until {human.moment(state.paused_until, zone)} ({state.reason})"
    if state.needs_probe(now):
        return "cool-down over: the next sweep probes it"
    if state.failures:
        return f"ok, {human.plural(state.failures, 'failure')} in a row"
    return "ok"


def _error_rates(conn: db.Connection, now: dt.datetime) -> dict[str, tuple[int, int]]:
    rows_ = conn.execute(
        """SELECT provider_id, count(*) AS checks,
                  count(*) FILTER (WHERE outcome = 'error') AS errors
           FROM ordermon_attempts WHERE checked_at > %(since)s GROUP BY provider_id""",
        {"since": now - dt.timedelta(hours=1)},
    )
    return {r["provider_id"]: (r["checks"], r["errors"]) for r in rows_}


def _probe(provider: provider_config.ProviderConfig, index: int) -> tuple[str, bool]:
    adapter = providers.build(provider, 1)
    try:
        check = adapter.probe()
    finally:
        adapter.close()
    status = f"HTTP {check.http_status}" if check.http_status else "no reply"
    if check.trouble is base.Trouble.CREDENTIALS:
        return _refused(provider, index, check), False
    if check.trouble is not None:
        return f"{check.trouble} problem ({status}): {check.answer.message or ''}".strip(), False
    return f"reachable, credentials accepted ({status} in {check.latency_ms} ms)", True


def _refused(provider: provider_config.ProviderConfig, index: int, check: base.Check) -> str:
    """Refused credentials, naming the config keys to check (never their values)."""
    message = check.answer.message or ""
    if provider.kind == "znet" and check.http_status == 200:
        # znet's empty body: its message already says why (dealer code, API, IP address).
        why = message.removeprefix("empty reply: ")
        reply = "znet replied with an empty body, HTTP 200" + (f": {why}" if why else "")
    else:
        status = f"HTTP {check.http_status}" if check.http_status else "no reply"
        said = f": {message}" if message and message != status else ""
        reply = f"{provider.kind} replied {status}{said}"
    return (
        f"credentials refused: check {provider_config.credential_hint(provider, index)} ({reply})"
    )
