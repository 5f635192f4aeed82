"""Load the YAML configuration, substitute ``${VAR}`` secrets and validate every key.

Every error names the key path (``providers[1].timeout: ...``) and exits with code 2. The
result is a tree of frozen dataclasses; secrets are kept out of their ``repr``.
"""

import dataclasses
import datetime as dt
import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ordermon import errors, schedule

SEARCH_PATH = (Path("ordermon.yaml"), Path("/etc/ordermon/config.yaml"))
ON_FAILED_POLICIES = ("refund", "reject", "hold")
PROVIDER_KINDS = ("znet",)
PLANNED_KINDS = ("barakat", "apstore", "internal", "json")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    batch_size: int = 100
    concurrency: int = 16
    lease: dt.timedelta = dt.timedelta(minutes=5)
    soft_time_limit: dt.timedelta = dt.timedelta(minutes=25)
    time_limit: dt.timedelta = dt.timedelta(minutes=30)


@dataclasses.dataclass(frozen=True)
class ProviderConfig:
    id: str
    name: str
    kind: str
    base_url: str
    timeout: float
    max_reply_bytes: int
    policy: schedule.Policy
    kod: str | None = None
    sifre: str | None = dataclasses.field(default=None, repr=False)
    path: str = "/servis/pin_kontrol.php"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be logged, stored or printed."""
        return tuple(s for s in (self.sifre,) if s)


@dataclasses.dataclass(frozen=True)
class Config:
    database_url: str = dataclasses.field(repr=False)
    timezone: str
    policy: schedule.Policy
    sweep: SweepConfig
    on_failed: str
    providers: tuple[ProviderConfig, ...]
    source: Path | None = None

    def provider_by_id(self, provider_id: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.id == provider_id), None)

    def provider_by_name(self, name: str) -> ProviderConfig | None:
        return next((p for p in self.providers if p.name == name), None)


def find_path(explicit: Path | None, env: Mapping[str, str]) -> Path:
    """``--config``, else ``$ORDERMON_CONFIG``, else ./ordermon.yaml, else /etc/ordermon."""
    if explicit is not None:
        return explicit
    if env.get("ORDERMON_CONFIG"):
        return Path(env["ORDERMON_CONFIG"])
    for candidate in SEARCH_PATH:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(p) for p in SEARCH_PATH)
    raise errors.ConfigError(
        f"no configuration file found (looked at --config, $ORDERMON_CONFIG, {searched}); "
        "copy config.example.yaml and pass it with --config PATH"
    )


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the file at ``path``; raise ConfigError naming the offending key."""
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise errors.ConfigError(f"{path}: not valid YAML{where}") from None
    return parse(document if document is not None else {}, env, source=path)


def parse(document: Any, env: Mapping[str, str], source: Path | None = None) -> Config:
    """Validate an already parsed YAML document."""
    root = _mapping(document, "(top level)")
    _only_keys(
        root,
        "",
        {"database", "timezone", "schedule", "sweep", "on_failed", "providers"},
    )
    database = _mapping(root.get("database", {}), "database")
    _only_keys(database, "database", {"url"})
    url = env.get("ORDERMON_DATABASE_URL") or _string(database.get("url"), "database.url", env)
    timezone = _string(root.get("timezone", "UTC"), "timezone", env)
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise errors.ConfigError(
            f"timezone: unknown time zone {timezone!r}; use a name like Europe/Istanbul or UTC"
        ) from None
    policy = _policy(root.get("schedule", {}), "schedule", schedule.Policy(), env)
    on_failed = _choice(root.get("on_failed", "refund"), "on_failed", ON_FAILED_POLICIES)
    providers_doc = root.get("providers", [])
    if not isinstance(providers_doc, list):
        raise errors.ConfigError("providers: expected a list of providers")
    providers = tuple(
        _provider(item, f"providers[{index}]", policy, env)
        for index, item in enumerate(providers_doc)
    )
    _unique(providers, "id")
    _unique(providers, "name")
    sweep = _sweep(root.get("sweep", {}), env)
    for index, provider in enumerate(providers):
        if dt.timedelta(seconds=provider.timeout * 2) > sweep.lease:
            raise errors.ConfigError(
                f"providers[{index}].timeout: {provider.timeout:g}s is too long for "
                f"sweep.lease ({sweep.lease.total_seconds():g}s); the lease must be at least "
                "twice the longest provider timeout"
            )
    return Config(url, timezone, policy, sweep, on_failed, providers, source)


def parse_duration(value: Any, key: str) -> dt.timedelta:
    """``500ms``, ``30s``, ``10m``, ``24h``, ``30d`` or a bare number of seconds."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int | float):
        value = str(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise errors.ConfigError(f"{key}: expected a duration like 20s, got {value!r}")
    return dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _sweep(document: Any, env: Mapping[str, str]) -> SweepConfig:
    doc = _mapping(document, "sweep")
    fields = {"batch_size", "concurrency", "lease", "soft_time_limit", "time_limit"}
    _only_keys(doc, "sweep", fields)
    default = SweepConfig()
    sweep = SweepConfig(
        batch_size=_integer(doc.get("batch_size", default.batch_size), "sweep.batch_size", 1),
        concurrency=_integer(doc.get("concurrency", default.concurrency), "sweep.concurrency", 1),
        lease=_positive(doc.get("lease"), "sweep.lease", default.lease),
        soft_time_limit=_positive(
            doc.get("soft_time_limit"), "sweep.soft_time_limit", default.soft_time_limit
        ),
        time_limit=_positive(doc.get("time_limit"), "sweep.time_limit", default.time_limit),
    )
    if sweep.soft_time_limit > sweep.time_limit:
        raise errors.ConfigError("sweep.soft_time_limit: must not be longer than sweep.time_limit")
    return sweep


def _policy(
    document: Any, key: str, base: schedule.Policy, env: Mapping[str, str]
) -> schedule.Policy:
    doc = _mapping(document, key)
    _only_keys(doc, key, {f.name for f in dataclasses.fields(schedule.Policy)})
    changes: dict[str, Any] = {}
    for name in ("first_check_after", "base_delay", "max_delay", "give_up_after"):
        if name in doc:
            changes[name] = parse_duration(doc[name], f"{key}.{name}")
    if "factor" in doc:
        changes["factor"] = _number(doc["factor"], f"{key}.factor", 1.0, 100.0)
    if "jitter" in doc:
        changes["jitter"] = _number(doc["jitter"], f"{key}.jitter", 0.0, 0.99)
    if "max_attempts" in doc and doc["max_attempts"] is not None:
        changes["max_attempts"] = _integer(doc["max_attempts"], f"{key}.max_attempts", 1)
    elif "max_attempts" in doc:
        changes["max_attempts"] = None
    policy = dataclasses.replace(base, **changes)
    if policy.max_delay < policy.base_delay:
        raise errors.ConfigError(f"{key}.max_delay: must not be shorter than base_delay")
    if policy.give_up_after <= dt.timedelta(0):
        raise errors.ConfigError(f"{key}.give_up_after: must be longer than 0s")
    return policy


def _provider(
    document: Any, key: str, default_policy: schedule.Policy, env: Mapping[str, str]
) -> ProviderConfig:
    doc = _mapping(document, key)
    allowed = {"id", "name", "kind", "base_url", "timeout", "max_reply_bytes", "schedule"}
    allowed |= {"kod", "sifre", "path"}
    _only_keys(doc, key, allowed)
    kind = _string(doc.get("kind"), f"{key}.kind", env)
    if kind in PLANNED_KINDS:
        raise errors.ConfigError(
            f"{key}.kind: {kind!r} is not supported by this version of ordermon yet "
            f"(supported: {', '.join(PROVIDER_KINDS)})"
        )
    _choice(kind, f"{key}.kind", PROVIDER_KINDS)
    base_url = _string(doc.get("base_url"), f"{key}.base_url", env)
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise errors.ConfigError(
            f"{key}.base_url: expected an http:// or https:// URL, got {base_url!r}"
        )
    timeout = _positive(doc.get("timeout"), f"{key}.timeout", dt.timedelta(seconds=20))
    provider = ProviderConfig(
        id=_string(doc.get("id"), f"{key}.id", env),
        name=_string(doc.get("name"), f"{key}.name", env),
        kind=kind,
        base_url=base_url.rstrip("/"),
        timeout=timeout.total_seconds(),
        max_reply_bytes=_integer(doc.get("max_reply_bytes", 65536), f"{key}.max_reply_bytes", 256),
        policy=_policy(doc.get("schedule", {}), f"{key}.schedule", default_policy, env),
        kod=_string(doc.get("kod"), f"{key}.kod", env),
        sifre=_string(doc.get("sifre"), f"{key}.sifre", env),
        path="/"
        + _string(doc.get("path", "/servis/pin_kontrol.php"), f"{key}.path", env).lstrip("/"),
    )
    if not re.match(r"^[A-Za-z0-9_.-]+$", provider.name):
        raise errors.ConfigError(
            f"{key}.name: use letters, digits, '.', '_' or '-' only, got {provider.name!r}"
        )
    return provider


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.ConfigError(f"{key}: expected a mapping of keys, got {_kind(value)}")
    return value


def _only_keys(doc: Mapping[str, Any], key: str, allowed: set[str]) -> None:
    for name in doc:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise errors.ConfigError(
                f"{where}: unknown key (expected one of: {', '.join(sorted(allowed))})"
            )


def _string(value: Any, key: str, env: Mapping[str, str]) -> str:
    if value is None:
        raise errors.ConfigError(f"{key}: required, but missing")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise errors.ConfigError(f"{key}: expected a string, got {_kind(value)}")
    text = str(value)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise errors.ConfigError(
                f"{key}: environment variable {name} is not set (referenced as ${{{name}}})"
            )
        return env[name]

    text = _ENV_VAR.sub(substitute, text)
    if not text.strip():
        raise errors.ConfigError(f"{key}: must not be empty")
    return text


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise errors.ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _integer(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ConfigError(f"{key}: expected a whole number, got {value!r}")
    if value < minimum:
        raise errors.ConfigError(f"{key}: must be at least {minimum}, got {value}")
    return value


def _number(value: Any, key: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ConfigError(f"{key}: expected a number, got {value!r}")
    if not minimum <= value <= maximum:
        raise errors.ConfigError(f"{key}: must be between {minimum:g} and {maximum:g}, got {value}")
    return float(value)


def _positive(value: Any, key: str, default: dt.timedelta) -> dt.timedelta:
    if value is None:
        return default
    duration = parse_duration(value, key)
    if duration <= dt.timedelta(0):
        raise errors.ConfigError(f"{key}: must be longer than 0s")
    return duration


def _unique(providers: tuple[ProviderConfig, ...], attribute: str) -> None:
    seen: dict[str, int] = {}
    for index, provider in enumerate(providers):
        value = getattr(provider, attribute)
        if value in seen:
            raise errors.ConfigError(
                f"providers[{index}].{attribute}: {value!r} is already used by "
                f"providers[{seen[value]}]"
            )
        seen[value] = index


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
