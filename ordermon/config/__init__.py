"""Load the YAML configuration, substitute ``${VAR}`` secrets and validate every key.

Every error names the key path (``providers[1].timeout: ...``) and exits with code 2. The
result is a tree of frozen dataclasses; secrets are kept out of their ``repr``.
"""

import dataclasses
import datetime as dt
import os
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ordermon import errors
from ordermon.config import notify as notify_config
from ordermon.config import providers as provider_config
from ordermon.config import validate
from ordermon.sweep import schedule

SEARCH_PATH = (Path("ordermon.yaml"), Path("/etc/ordermon/config.yaml"))
ON_FAILED_POLICIES = ("refund", "reject", "hold")
MAX_BYTES = 1_000_000
MAX_DEPTH = 50
parse_duration = validate.duration


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
    """Read and validate the file at ``path``; raise ConfigError naming the offending key."""
    env = os.environ if env is None else env
    document = parse_yaml(_read(path), path)
    return parse(document if document is not None else {}, env, source=path)


def _read(path: Path) -> str:
    """The file's text, read at most MAX_BYTES (+1, to know it is longer) whatever it is: a
    huge file, a growing one or an endless device costs nothing."""
    too_large = f"{path}: the config file is larger than 1 MB; ordermon's needs a few kilobytes"
    try:
        with path.open("rb") as stream:
            if os.fstat(stream.fileno()).st_size > MAX_BYTES:
                raise errors.ConfigError(too_large)
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise errors.ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise errors.ConfigError(too_large)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.ConfigError(f"{path}: not UTF-8 text (at byte {exc.start})") from None


class _Refused(Exception):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.mark = problem, mark


class _BoundedLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (a 365-byte file of nested aliases expands to
    gigabytes) and without nesting deeper than MAX_DEPTH (composing recurses per level)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.last_node: yaml.Node | None = None

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Refused("YAML aliases (*name) are not allowed in ordermon's config", event)
        nests = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        self.depth += nests
        if self.depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= nests

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self.last_node = node  # where a value that cannot be built (a 5,000-digit int) is
        return super().construct_object(node, deep)


def parse_yaml(text: str, source: Path | None = None) -> Any:
    """The YAML document in ``text``, read by the bounded loader; every failure, whatever it
    is, a ConfigError of one short line."""
    where = f"{source}: " if source is not None else ""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # refuses unprintable characters already
        return loader.get_single_data()
    except _Refused as exc:
        raise errors.ConfigError(f"{where}{exc.problem}{_line(exc.mark)}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None)
        detail = f" ({validate.cut(problem)})" if problem else ""
        raise errors.ConfigError(f"{where}not valid YAML{_line(exc)}{detail}") from None
    except (ValueError, TypeError, OverflowError):
        at = _line(loader and loader.last_node)
        raise errors.ConfigError(
            f"{where}not valid YAML{at}: a value cannot be read (a number with thousands of "
            "digits, or a date that does not exist)"
        ) from None
    except (RecursionError, MemoryError):
        raise errors.ConfigError(f"{where}too large or too deeply nested to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def _line(marked: Any) -> str:
    mark = getattr(marked, "problem_mark", None) or getattr(marked, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def parse(document: Any, env: Mapping[str, str], source: Path | None = None) -> Config:
    """Validate an already parsed YAML document."""
    root = validate.mapping(document, "(top level)")
    validate.only_keys(
        root,
        "",
        {
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
        },
    )
    read = validate.Reader(env)
    database = validate.mapping(root.get("database", {}), "database")
    validate.only_keys(database, "database", {"url"})
    url = env.get("ORDERMON_DATABASE_URL") or read.string(database.get("url"), "database.url")
    timezone = read.string(root.get("timezone", "UTC"), "timezone")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise errors.ConfigError(
            f"timezone: unknown time zone {validate.quoted(timezone)}; use a name like "
            "Europe/Istanbul or UTC"
        ) from None
    policy = provider_config.policy(root.get("schedule", {}), "schedule", schedule.Policy())
    on_failed = validate.choice(root.get("on_failed", "refund"), "on_failed", ON_FAILED_POLICIES)
    providers_doc = root.get("providers", [])
    if not isinstance(providers_doc, list):
        raise errors.ConfigError("providers: expected a list of providers")
    providers = tuple(
        provider_config.parse(item, f"providers[{index}]", policy, env)
        for index, item in enumerate(providers_doc)
    )
    _unique(providers, "id")
    _unique(providers, "name")
    sweep = _sweep(root.get("sweep", {}))
    for index, provider in enumerate(providers):
        if dt.timedelta(seconds=provider.timeout * 2) > sweep.lease:
            raise errors.ConfigError(
                f"providers[{index}].timeout: {provider.timeout:g}s is too long for "
                f"sweep.lease ({sweep.lease.total_seconds():g}s); the lease must be at least "
                "twice the longest provider timeout"
            )
    history = validate.mapping(root.get("history", {}), "history")
    validate.only_keys(history, "history", {"keep"})
    metrics = validate.mapping(root.get("metrics", {}), "metrics")
    validate.only_keys(metrics, "metrics", {"textfile"})
    ping = validate.mapping(root.get("healthcheck", {}), "healthcheck")
    validate.only_keys(ping, "healthcheck", {"ping_url", "timeout"})
    ping_url = read.optional_string(ping.get("ping_url"), "healthcheck.ping_url")
    if ping_url is not None and not ping_url.startswith(("http://", "https://")):
        raise errors.ConfigError("healthcheck.ping_url: expected an http:// or https:// URL")
    textfile = read.optional_string(metrics.get("textfile"), "metrics.textfile")
    return Config(
        url,
        timezone,
        policy,
        sweep,
        on_failed,
        providers,
        source,
        history_keep=validate.positive_duration(
            history.get("keep"), "history.keep", dt.timedelta(days=30)
        ),
        metrics_textfile=Path(textfile) if textfile else None,
        ping_url=ping_url.rstrip("/") if ping_url else None,
        ping_timeout=validate.positive_duration(
            ping.get("timeout"), "healthcheck.timeout", dt.timedelta(seconds=2)
        ).total_seconds(),
        notify=notify_config.parse(root.get("notify", {}), env),
    )


def _sweep(document: Any) -> SweepConfig:
    doc = validate.mapping(document, "sweep")
    fields = {"batch_size", "concurrency", "lease", "soft_time_limit", "time_limit"}
    validate.only_keys(doc, "sweep", fields)
    default = SweepConfig()
    sweep = SweepConfig(
        batch_size=validate.integer(
            doc.get("batch_size", default.batch_size), "sweep.batch_size", 1
        ),
        concurrency=validate.integer(
            doc.get("concurrency", default.concurrency), "sweep.concurrency", 1
        ),
        lease=validate.positive_duration(doc.get("lease"), "sweep.lease", default.lease),
        soft_time_limit=validate.positive_duration(
            doc.get("soft_time_limit"), "sweep.soft_time_limit", default.soft_time_limit
        ),
        time_limit=validate.positive_duration(
            doc.get("time_limit"), "sweep.time_limit", default.time_limit
        ),
    )
    if sweep.soft_time_limit > sweep.time_limit:
        raise errors.ConfigError("sweep.soft_time_limit: must not be longer than sweep.time_limit")
    return sweep


def _unique(providers: tuple[provider_config.ProviderConfig, ...], attribute: str) -> None:
    seen: dict[str, int] = {}
    for index, provider in enumerate(providers):
        value = getattr(provider, attribute)
        if value in seen:
            raise errors.ConfigError(
                f"providers[{index}].{attribute}: {validate.quoted(value)} is already used by "
                f"providers[{seen[value]}]"
            )
        seen[value] = index
