"""`ordermon simulate`: the provider simulator on its own, for trying a config before
production. Every provider kind answers on one port; each order's fate is scripted, the same
for all, or drawn at random from a seed; the `providers:` snippet that points at it is printed.
"""

import dataclasses
import errno
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import yaml

from ordermon import errors
from ordermon.config import human, validate
from ordermon.dev import delivery as delivery_times
from ordermon.dev import simulator
from ordermon.dev import simulator_replies as replies

DEFAULT_PORT = 8765
# The simulator's dummy credentials: the snippet carries them and the simulator accepts only
# them, so a provider entry with a wrong one is refused as a real provider would refuse it.
KOD, SIFRE, TOKEN, TENANT_HOST = "sim-kod", "sim-sifre", "sim-token", "shop.simulated"
# Each fate, as the simulator's step (completed gets a PIN made of the reference).
FATES = {"delivered": "completed", "refused": "failed", "pending": "processing", "error": "unknown"}
# ``--fate random``: how often each fate is drawn.
RANDOM_WEIGHTS = {"delivered": 55, "refused": 20, "pending": 10, "error": 15}
FATE_CHOICES = (*FATES, "random")


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    fate: str = "delivered"
    seed: int | None = None
    after_checks: int = 0
    after_seconds: float = 0.0
    latency: float = 0.0
    scripts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Each order's own delivery time, drawn from this distribution (dev/delivery.py) and
    # counted from its first check, on a clock ``speed`` times faster than real time.
    delivery: str | None = None
    speed: float = 1.0


def settings(
    *,
    host: str,
    port: int,
    fate: str,
    seed: int | None,
    after_checks: int,
    after_seconds: float,
    latency: float,
    orders: list[str],
    delivery: str | None = None,
    speed: float = 1.0,
) -> Settings:
    """The options, checked: a wrong one is a usage error naming it."""
    for option, value, most in (
        ("--latency", latency, replies.MAX_DELAY),
        ("--after-seconds", after_seconds, 7 * 86400.0),
        ("--speed", speed, 10_000.0),
    ):
        if not 0 <= value <= most:  # NaN and infinity fail this too
            raise errors.UsageError(f"{option}: expected seconds from 0 to {most:g}, got {value}")
    if fate not in FATE_CHOICES:
        raise errors.UsageError(
            f"--fate: expected one of {', '.join(FATE_CHOICES)}, got {validate.quoted(fate)}"
        )
    if delivery is not None and delivery not in delivery_times.DISTRIBUTIONS:
        raise errors.UsageError(
            f"--delivery: expected one of {', '.join(delivery_times.DISTRIBUTIONS)}, "
            f"got {validate.quoted(delivery)}"
        )
    if speed <= 0:
        raise errors.UsageError(f"--speed: expected a positive factor, got {speed}")
    if (fate == "random" or delivery is not None) and seed is None:
        seed = random.SystemRandom().randrange(1, 1_000_000)  # printed, so it can be repeated
    return Settings(
        host=host,
        port=port,
        fate=fate,
        seed=seed,
        after_checks=after_checks,
        after_seconds=after_seconds,
        latency=latency,
        scripts=tuple(_script(order) for order in orders),
        delivery=delivery,
        speed=speed,
    )


def _script(option: str) -> tuple[str, tuple[str, ...]]:
    """``REF=STEP[,STEP...]``: the replies about REF, one step per check, the last repeating."""
    reference, equals, text = option.partition("=")
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    if not equals or not reference.strip() or not steps:
        raise errors.UsageError(
            f"--order: expected REFERENCE=STEP[,STEP...], got {validate.quoted(option)}"
        )
    try:
        replies.validate(simulator.expand(steps))
    except ValueError as exc:
        raise errors.UsageError(f"--order {validate.cut(reference)}: {exc}") from None
    return reference.strip(), steps


class Fates:
    """The step for each check of an unscripted order: ``processing`` until its delivery
    is due (after N checks, or S seconds after its first), then its fate for good."""

    def __init__(self, config: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        self._first_seen: dict[str, float] = {}

    def final(self, reference: str) -> str:
        fate = self.config.fate
        if fate == "random":
            # Seeded by the seed and the reference alone: the same fates whatever the order
            # of the checks, the batches or the number of sweeps.
            draw = random.Random(f"{self.config.seed}/{reference}")
            fate = draw.choices(list(RANDOM_WEIGHTS), weights=list(RANDOM_WEIGHTS.values()))[0]
        step = FATES[fate]
        return f"{step}:SIM-{reference}" if step == "completed" else step

    def __call__(self, reference: str, served: int) -> str:
        first = self._first_seen.setdefault(reference, self.clock())
        if served < self.config.after_checks:
            return "processing"
        if self.clock() - first < self.config.after_seconds:
            return "processing"
        if self.clock() - first < self.delivery_after(reference):
            return "processing"
        return self.final(reference)

    def delivery_after(self, reference: str) -> float:
        """Real seconds from the order's first check to its delivery (0 without --delivery):
        drawn by the seed and the reference alone, so the same every run."""
        if self.config.delivery is None:
            return 0.0
        draw = delivery_times.DISTRIBUTIONS[self.config.delivery]
        return draw(random.Random(f"{self.config.seed}/{reference}/delivery")) / self.config.speed


def snippet(url: str) -> str:
    """The `providers:` section for a config, one provider of each kind pointing at ``url``."""

    def provider(kind: str, **keys: Any) -> dict[str, Any]:
        return {"id": f"sim-{kind}", "name": f"sim-{kind}", "kind": kind, **keys}

    document = {
        "providers": [
            provider("znet", base_url=url, kod=KOD, sifre=SIFRE),
            provider("barakat", base_url=url, token=TOKEN),
            provider("apstore", base_url=url, token=TOKEN),
            provider("internal", base_url=url, token=TOKEN, tenant_host=TENANT_HOST),
            provider("json", **simulator.json_provider_keys(url, TOKEN)),
        ]
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def describe(config: Settings) -> str:
    """The fates in one line, for the header."""
    if config.fate == "random":
        text = f"random (seed {config.seed}: --seed {config.seed} draws the same fates again)"
    else:
        text = config.fate
    delays = []
    if config.after_checks:
        delays.append(f"after {human.plural(config.after_checks, 'check')}")
    if config.after_seconds:
        delays.append(f"{config.after_seconds:g}s after the first check")
    if config.delivery is not None:
        delays.append(
            f"at a {config.delivery} time after the first check (seed {config.seed}, "
            f"{config.speed:g}x real time)"
        )
    if delays and config.fate != "pending":
        text += ", due " + " and ".join(delays)
    if config.scripts:
        text += f"; {human.plural(len(config.scripts), 'order')} scripted with --order"
    return text


def start(config: Settings, log: Callable[[str], None] | None) -> simulator.Simulator:
    """The simulator, listening; a port in use or a host it cannot listen on is a usage error."""
    on_request = _logger(log) if log is not None else None
    try:
        sim = simulator.Simulator(
            kod=KOD,
            sifre=SIFRE,
            token=TOKEN,
            host=config.host,
            port=config.port,
            latency=config.latency,
            fate=Fates(config),
            on_request=on_request,
            record=False,
        )
    except OSError as exc:
        where = f"{config.host}:{config.port}"
        if exc.errno == errno.EADDRINUSE:
            raise errors.UsageError(
                f"--port {config.port}: {where} is already in use; choose another port, "
                "or --port 0 for a free one"
            ) from None
        raise errors.UsageError(
            f"cannot listen on {validate.cut(where)} ({exc.strerror or type(exc).__name__})"
        ) from None
    for reference, steps in config.scripts:
        sim.script(reference, *steps)
    return sim.start()


def serve(
    config: Settings, out: TextIO, log: Callable[[str], None] | None, stop: threading.Event
) -> None:
    """Listen, print the snippet on ``out``, answer until ``stop`` is set, then close."""
    sim = start(config, log)
    try:
        url = _reachable(sim.url, config.host)
        port = url.rsplit(":", 1)[1]
        out.write(
            f"# ordermon simulate: every provider kind on {url} (port {port})\n"
            f"# fates: {describe(config)}\n"
            "# Paste these providers into a config, or point your own providers' base_url\n"
            "# here; the credentials are the simulator's dummy values, which it checks.\n"
            + snippet(url)
            + f"{_READY} stop with Ctrl-C or SIGTERM\n"
        )
        out.flush()
        while not stop.wait(0.2):
            pass
    finally:
        sim.stop()


_READY = "# listening;"


def _reachable(url: str, host: str) -> str:
    """The URL a config on this machine uses (a wildcard host is reached on 127.0.0.1)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - only a spelling compared
        port = url.rsplit(":", 1)[1]
        return f"http://127.0.0.1:{port}"
    return url


# barakat and apstore speak one protocol on one path: the simulator cannot tell them apart.
_SHOWN_KIND = {"barakat": "barakat/apstore"}


def _logger(log: Callable[[str], None]) -> simulator.OnRequest:
    def on_request(request: simulator.Request, steps: dict[str, str], refused: bool) -> None:
        kind = _SHOWN_KIND.get(request.kind, request.kind)
        if request.kind == "unknown":
            log(f"404 for {validate.cut(request.path)}: no provider kind answers on that path")
            return
        if refused:
            log(f"{kind}: refused the credentials (use the snippet's values)")
            return
        for reference, step in steps.items():
            shown = "completed (with a PIN)" if step.startswith("completed:") else step
            log(f"{kind} {validate.cut(reference)}: {shown}")

    return on_request
