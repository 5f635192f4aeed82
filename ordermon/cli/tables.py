"""Where ordermon's tables go, and how they look there.

On a terminal, Rich draws them boxed at the terminal's width, and a cell too long for its
column folds onto the next line (never cut with "…"). Anywhere else (cron mail, a pipe,
``| less``) they are plain, complete text: no box drawing, no colour, no column ever cut or
wrapped, whatever ``COLUMNS`` says, and no trailing blanks. ``ORDERMON_BOX=1`` asks for the
boxes off a terminal too (still complete)."""

import os
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

# Wide enough that no line ordermon prints is wrapped: every cell is bounded text.
PLAIN_WIDTH = 1_000_000


def on_terminal() -> bool:
    return sys.stdout.isatty()


def boxed() -> bool:
    """Whether tables are drawn with boxes: on a terminal, or when ORDERMON_BOX=1 asks."""
    return on_terminal() or os.environ.get("ORDERMON_BOX", "") == "1"


class _TrimmedLines:
    """A file that writes whole lines to ``out`` without their trailing blanks (Rich pads
    every cell to its column's width)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._out.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._out.write(self._pending.rstrip(" "))
            self._pending = ""
        self._out.flush()

    def isatty(self) -> bool:
        return False


def console(markup: bool = False) -> "Console":
    """The console for stdout; ``markup`` only for ordermon's own words (the demo's)."""
    from rich.console import Console

    options: dict[str, Any] = {"markup": markup, "emoji": False, "highlight": False}
    if on_terminal():
        return Console(**options)
    return Console(
        file=_TrimmedLines(sys.stdout),  # type: ignore[arg-type]
        width=PLAIN_WIDTH,
        force_terminal=False,
        color_system=None,
        **options,
    )


def table(title: "Text | None", columns: tuple[str, ...] = (), **options: Any) -> "Table":
    """A table with ``columns`` (more may be added with `column`), boxed or plain."""
    from rich.table import Table

    if not boxed():
        options |= {"box": None, "pad_edge": False, "title_justify": "left"}
    made = Table(title=title, **options)
    for header in columns:
        column(made, header)
    return made


def column(of: "Table", header: str = "", **options: Any) -> None:
    """A column whose long cells fold (on a terminal; off one nothing is too long)."""
    of.add_column(header, overflow="fold", **options)
