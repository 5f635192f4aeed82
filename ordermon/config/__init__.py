"""Load the YAML configuration, substitute ``${VAR}`` secrets and validate every key.

Every error names the key path (``providers[1].timeout: ...``) and exits with code 2; one run
reports all of a file's errors at once (at most `validate.MAX_ERRORS` lines, the rest counted).
The result is a tree of frozen dataclasses; secrets are kept out of their ``repr``.
"""

import dataclasses
import datetime as dt
import os
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ordermon import errors, pooler
from ordermon.config import database as database_config
from ordermon.config import notify as notify_config
from ordermon.config import providers as provider_config
from ordermon.config import validate, yamlfile
from ordermon.sweep import schedule

SEARCH_PATH = (Path("ordermon.yaml"), Path("/etc/ordermon/config.yaml"))
ON_FAILED_POLICIES = ("refund", "reject", "hold")
MAX_BYTES = yamlfile.MAX_BYTES
MAX_DEPTH = yamlfile.MAX_DEPTH
parse_duration = validate.duration
parse_yaml = yamlfile.parse_yaml


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    batch_size: int = 100
    concurrency: int = 16
    lease: dt.timedelta = dt.timedelta(minutes=5)
    soft_time_limit: dt.timedelta = dt.timedelta(minutes=25)
    time_limit: dt.timedelta = dt.timedelta(minutes=30)


@dataclasses.dataclass(frozen=True)
class Config:
    database_url: str = dataclasses.field(repr=False)
    timezone: str
    policy: schedule.Policy
    sweep: SweepConfig
    on_failed: str
    providers: tuple[provider_config.ProviderConfig, ...]
    source: Path | None = None
    history_keep: dt.timedelta = dt.timedelta(days=30)
    metrics_textfile: Path | None = None
    ping_url: str | None = dataclasses.field(default=None, repr=False)
    ping_timeout: float = 2.0
    notify: notify_config.NotifyConfig = dataclasses.field(
        default_factory=notify_config.NotifyConfig
    )
    database_pooler: str = pooler.NONE
    database_migrate_url: str | None = dataclasses.field(default=None, repr=False)

    def provider_by_id(self, provider_id: str) -> provider_config.ProviderConfig | None:
        return next((p for p in self.providers if p.id == provider_id), None)

    def provider_by_name(self, name: str) -> provider_config.ProviderConfig | None:
        return next((p for p in self.providers if p.name == name), None)

    def concurrency_of(self, provider: provider_config.ProviderConfig) -> int:
        """Requests in flight to ``provider`` at most: its own cap within the sweep's."""
        return min(provider.max_concurrency or self.sweep.concurrency, self.sweep.concurrency)


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
    """Read and validate the file at ``path``; raise one ConfigError listing every error,
    each naming its key."""
    env = os.environ if env is None else env
    document, problems = yamlfile.load(yamlfile.read(path), path)
    config = _collect(document if document is not None else {}, env, path, problems)
    problems.raise_any(str(path), validate.referenced(document, env))
    return config


def parse(document: Any, env: Mapping[str, str], source: Path | None = None) -> Config:
    """Validate an already parsed YAML document."""
    problems = validate.Problems()
    config = _collect(document, env, source, problems)
    where = str(source) if source is not None else "the config"
    problems.raise_any(where, validate.referenced(document, env))
    return config


_TOP_KEYS = {
    "database",
    "timezone",
    "schedule",
    "sweep",
    "on_failed",
    "providers",
    "history",
    "metrics",
    "healthcheck",
    "notify",
}


def _collect(
    document: Any, env: Mapping[str, str], source: Path | None, problems: validate.Problems
) -> Config:
    """The config ``document`` describes, every error noted in ``problems`` (a key in error
    takes its default, so the other keys are still read and checked)."""
    check = problems.check
    if not isinstance(document, dict):  # nothing else to read: its one error
        problems.add(f"(top level): expected a mapping of keys, got {validate.kind(document)}")
        problems.raise_any(str(source) if source is not None else "the config")
    root: dict[str, Any] = document
    check(lambda: validate.only_keys(root, "", _TOP_KEYS), None)
    section = problems.section
    read = validate.Reader(env)
    database = database_config.collect(root.get("database", {}), env, problems)
    timezone = check(lambda: _timezone(read.string(root.get("timezone", "UTC"), "timezone")), "UTC")
    policy = provider_config.policy(
        root.get("schedule", {}), "schedule", schedule.Policy(), problems
    )
    sweep = _sweep(root.get("sweep", {}), problems)
    history = section(root.get("history", {}), "history", {"keep"})
    month = dt.timedelta(days=30)
    keep = check(
        lambda: validate.positive_duration(history.get("keep"), "history.keep", month), month
    )
    metrics = section(root.get("metrics", {}), "metrics", {"textfile"})
    textfile = check(
        lambda: _textfile(read.optional_string(metrics.get("textfile"), "metrics.textfile")), None
    )
    ping = section(root.get("healthcheck", {}), "healthcheck", {"ping_url", "timeout"})
    ping_url = check(
        lambda: _ping_url(read.optional_string(ping.get("ping_url"), "healthcheck.ping_url")), None
    )
    two = dt.timedelta(seconds=2)
    ping_timeout = check(
        lambda: validate.positive_duration(ping.get("timeout"), "healthcheck.timeout", two), two
    )
    notify = notify_config.collect(root.get("notify", {}), env, problems)
    on_failed = check(
        lambda: validate.choice(root.get("on_failed", "refund"), "on_failed", ON_FAILED_POLICIES),
        "refund",
    )
    providers = _providers(root.get("providers", []), policy, env, problems)
    _lease_covers_timeouts(sweep.lease, providers, problems)
    return Config(
        database.url,
        timezone,
        policy,
        sweep,
        on_failed,
        tuple(provider for _, provider in providers),
        source,
        history_keep=keep,
        metrics_textfile=Path(textfile) if textfile else None,
        ping_url=ping_url.rstrip("/") if ping_url else None,
        ping_timeout=ping_timeout.total_seconds(),
        notify=notify,
        database_pooler=database.pooler,
        database_migrate_url=database.migrate_url,
    )


# Files in the zoneinfo directory that are no zone of the IANA database: what they mean
# depends on the host ("localtime" is the host's own zone, "Factory" says "-00").
_HOST_ZONES = {"localtime", "Factory", "posixrules"}


def _timezone(name: str) -> str:
    try:
        if name in _HOST_ZONES or name.startswith(("posix/", "right/")):
            raise ValueError(name)
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise errors.ConfigError(
            f"timezone: unknown time zone {validate.quoted(name)}; use a name like "
            "Europe/Istanbul or UTC"
        ) from None
    return name


def _lease_covers_timeouts(
    lease: dt.timedelta,
    providers: list[tuple[int, provider_config.ProviderConfig]],
    problems: validate.Problems,
) -> None:
    """The lease is at least twice every provider's timeout: one mistake is one error (a
    short lease under five providers' default timeouts is said once, on the lease)."""
    too_long = [
        (index, provider)
        for index, provider in providers
        if dt.timedelta(seconds=provider.timeout * 2) > lease
        and problems.clean(f"providers[{index}].timeout", "sweep.lease")
    ]
    if len(too_long) == 1:
        [(index, provider)] = too_long
        problems.add(
            f"providers[{index}].timeout: {provider.timeout:g}s is too long for sweep.lease "
            f"({lease.total_seconds():g}s); the lease must be at least twice the longest "
            "provider timeout"
        )
    elif too_long:
        longest = max(provider.timeout for _, provider in too_long)
        named = ", ".join(f"providers[{index}]" for index, _ in too_long[:5])
        others = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        problems.add(
            f"sweep.lease: {lease.total_seconds():g}s is shorter than twice the timeout of "
            f"{named}{others} (the longest {longest:g}s); make the lease at least "
            f"{longest * 2:g}s, or those timeouts shorter"
        )


def _textfile(path: str | None) -> str | None:
    # node_exporter's textfile collector reads only *.prom files; "x.prom/" names a directory.
    if path is not None and (path.endswith("/") or not path.endswith(".prom")):
        raise errors.ConfigError(
            "metrics.textfile: expected a file name ending in .prom (node_exporter's textfile "
            "collector reads only those), such as /var/lib/node_exporter/textfile_collector/"
            "ordermon.prom"
        )
    return path


def _ping_url(url: str | None) -> str | None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise errors.ConfigError("healthcheck.ping_url: expected an http:// or https:// URL")
    if url is not None and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        # urllib sends no user info from a URL: the pings would fail, every one of them.
        raise errors.ConfigError(
            "healthcheck.ping_url: user info (user:password@) in the URL is not sent; put "
            "the check's token in the path, as healthchecks.io does"
        )
    return url


def _providers(
    document: Any, policy: schedule.Policy, env: Mapping[str, str], problems: validate.Problems
) -> list[tuple[int, provider_config.ProviderConfig]]:
    """Each provider that can be read, with its index in the list; two may not share an id
    or a name."""
    if not isinstance(document, list):
        problems.add("providers: expected a list of providers")
        return []
    found: list[tuple[int, provider_config.ProviderConfig]] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(document):
        if problems.full():
            break
        key = f"providers[{index}]"
        provider = provider_config.collect(item, key, policy, env, problems)
        if provider is None:
            continue
        found.append((index, provider))
        for attribute in ("id", "name"):
            value = getattr(provider, attribute)
            if not problems.clean(f"{key}.{attribute}"):
                continue
            earlier = seen.setdefault((attribute, value), index)
            if earlier != index:
                problems.add(
                    f"{key}.{attribute}: {validate.quoted(value)} is already used by "
                    f"providers[{earlier}]"
                )
    return found


def _sweep(document: Any, problems: validate.Problems) -> SweepConfig:
    check = problems.check
    fields = {"batch_size", "concurrency", "lease", "soft_time_limit", "time_limit"}
    doc = problems.section(document, "sweep", fields)
    default = SweepConfig()

    def count(name: str, value: int) -> int:
        return check(lambda: validate.integer(doc.get(name, value), f"sweep.{name}", 1), value)

    def limit(name: str, value: dt.timedelta) -> dt.timedelta:
        key = f"sweep.{name}"
        return check(lambda: validate.positive_duration(doc.get(name), key, value), value)

    sweep = SweepConfig(
        batch_size=count("batch_size", default.batch_size),
        concurrency=count("concurrency", default.concurrency),
        lease=limit("lease", default.lease),
        soft_time_limit=limit("soft_time_limit", default.soft_time_limit),
        time_limit=limit("time_limit", default.time_limit),
    )
    longer = sweep.soft_time_limit > sweep.time_limit
    if longer and problems.clean("sweep.soft_time_limit", "sweep.time_limit"):
        problems.add("sweep.soft_time_limit: must not be longer than sweep.time_limit")
    return sweep
