"""The development aids on the command line: `simulate`, for trying a config before
production (the demo is in the main module)."""

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ordermon.cli import support

if TYPE_CHECKING:
    import threading

app = typer.Typer()
DEFAULT_PORT = 8765  # ordermon.dev.simulate.DEFAULT_PORT (not imported: --help stays cheap)


@app.command()
def simulate(
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, help="Port to listen on; 0 picks a free one (printed)."
        ),
    ] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    fate: Annotated[
        str,
        typer.Option(
            "--fate",
            help="What becomes of every order not scripted with --order: delivered, refused, "
            "pending (never resolves), error (an unknown status word), or random.",
        ),
    ] = "delivered",
    order: Annotated[
        list[str] | None,
        typer.Option(
            "--order",
            help="REFERENCE=STEP[,STEP...]: the replies about one order, one step per check, "
            "the last repeating (steps: processing, completed[:PIN], failed, unknown, "
            "http500, 429:N, ...); repeatable.",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="With --fate random: draw the same fates again."),
    ] = None,
    after_checks: Annotated[
        int,
        typer.Option("--after-checks", min=0, help="Answer 'processing' to the first N checks."),
    ] = 0,
    after_seconds: Annotated[
        float,
        typer.Option(
            "--after-seconds",
            min=0,
            help="Answer 'processing' until S seconds after an order's first check.",
        ),
    ] = 0.0,
    latency: Annotated[
        float, typer.Option("--latency", min=0, help="Seconds every reply takes.")
    ] = 0.0,
    delivery: Annotated[
        str | None,
        typer.Option(
            "--delivery",
            help="Deliver each order at its own time after its first check, drawn from "
            "lognormal (median 90 s, p95 10 min) or bimodal (70 % within 20 s, 30 % after "
            "20 min).",
        ),
    ] = None,
    speed: Annotated[
        float,
        typer.Option("--speed", help="With --delivery: the clock runs this many times faster."),
    ] = 1.0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not log each check on stderr.")
    ] = False,
) -> None:
    """Serve every provider kind on one port, with scripted or random fates, and print the
    `providers:` snippet that points a config at it. Runs until SIGTERM or Ctrl-C."""
    from ordermon.dev import simulate as simulation

    with support.expected_failures():
        settings = simulation.settings(
            host=host,
            port=port,
            fate=fate,
            seed=seed,
            after_checks=after_checks,
            after_seconds=after_seconds,
            latency=latency,
            orders=order or [],
            delivery=delivery,
            speed=speed,
        )
        stop = _stop_on_signals()
        simulation.serve(settings, sys.stdout, None if quiet else _log, stop)


def _log(line: str) -> None:
    from ordermon.cli import render

    sys.stderr.write(f"simulate: {render.shown(line)}\n")
    sys.stderr.flush()


def _stop_on_signals() -> "threading.Event":
    """SIGTERM or SIGINT: stop listening and exit 0."""
    import signal
    import threading

    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
