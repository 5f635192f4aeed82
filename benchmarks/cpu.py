"""Who used the CPU during a measurement: PostgreSQL's processes, this process (the provider
simulator runs in it) and its child processes (a sweep, or the bare HTTP loop).

On a 2-core machine shared by all three, throughput is bounded by the CPU each check costs
all of them together; these figures show where it goes."""

import dataclasses
import os
import resource
import threading
from pathlib import Path
from types import TracebackType

_TICK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class CpuSeconds:
    postgres: float = 0.0
    simulator: float = 0.0
    client: float = 0.0  # the sweep process, or the bare HTTP loop

    @property
    def total(self) -> float:
        return self.postgres + self.simulator + self.client


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of every running postgres process (server and backends), by pid."""
    seconds = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name != "postgres":
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return seconds


def _rusage_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Measures the CPU used inside a ``with`` block. A backend that exits during the block
    (a sweep's connection) is sampled every 50 ms, so at most that much of it is missed."""

    def __init__(self) -> None:
        self.result = CpuSeconds()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def __enter__(self) -> "CpuMeter":
        self._start = _postgres_cpu()
        self._last = dict(self._start)
        self._self = _rusage_seconds(resource.RUSAGE_SELF)
        self._children = _rusage_seconds(resource.RUSAGE_CHILDREN)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self._last.update(_postgres_cpu())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._sampler.join()
        self._last.update(_postgres_cpu())
        self.result = CpuSeconds(
            postgres=sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items()),
            # The sampler thread's own reading of /proc is counted here too; it is small.
            simulator=_rusage_seconds(resource.RUSAGE_SELF) - self._self,
            client=_rusage_seconds(resource.RUSAGE_CHILDREN) - self._children,
        )
