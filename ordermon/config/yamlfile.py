"""Reading the config file within bounds: its size, YAML aliases, nesting depth, and keys
given twice (an error naming both lines, where YAML alone would keep the last silently)."""

import heapq
import os
from pathlib import Path
from typing import Any

import yaml

from ordermon import errors
from ordermon.config import validate

MAX_BYTES = 1_000_000
MAX_DEPTH = 50


def read(path: Path) -> str:
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
    """The YAML document in ``text``; a key given twice is an error like any other."""
    document, twice = load(text, source)
    twice.raise_any()
    return document


def load(text: str, source: Path | None = None) -> tuple[Any, validate.Problems]:
    """The YAML document in ``text``, read by the bounded loader, and the keys it gives twice
    (as problems, to report with the others). Every failure to read it, whatever it is, is a
    ConfigError of one short line."""
    where = f"{source}: " if source is not None else ""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # refuses unprintable characters already
        node = loader.get_single_node()
        twice = _keys_twice(node)
        return (loader.construct_document(node) if node is not None else None), twice
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


def _keys_twice(root: yaml.Node | None) -> validate.Problems:
    """Each key given twice in one mapping, by its key path, in the order of the file: the
    first MAX_ERRORS of them kept, the others counted."""
    earliest: list[tuple[int, int, str]] = []  # a heap of (-line, first line, key path)
    count = 0
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    while stack:  # a loop, not recursion: the tree is as deep as the file nests
        node, path = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # refused when it is built
                continue
            name = validate.cut(key_node.value)
            child = f"{path}.{name}" if path else name
            line = key_node.start_mark.line + 1
            stack.append((value_node, child))
            seen = first.get((key_node.tag, key_node.value))
            if seen is None:
                first[(key_node.tag, key_node.value)] = line
                continue
            count += 1
            heapq.heappush(earliest, (-line, seen, child))
            if len(earliest) > validate.MAX_ERRORS:
                heapq.heappop(earliest)  # the latest line goes
    twice = validate.Problems()
    for line, seen, child in sorted(earliest, reverse=True):
        twice.add(
            f"{child}: duplicate key at line {-line} (first at line {seen}); remove one of them"
        )
    twice.more = count - len(earliest)
    return twice


def _line(marked: Any) -> str:
    mark = getattr(marked, "problem_mark", None) or getattr(marked, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""
