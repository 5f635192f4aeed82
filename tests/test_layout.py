"""The package layout: subpackages draw the architecture, and no module imports a module that
imports it back, not even inside a function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ordermon"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The ordermon modules `path` imports anywhere, except under ``if TYPE_CHECKING`` (which
    never runs)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return (found & known) - {_module_name(path)}


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, known) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    finished: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in finished and (found := walk(nxt, [*path, nxt])):
                return found
        finished.add(node)
        return None

    for start in sorted(graph):
        if start not in finished and (found := walk(start, [start])):
            return found
    return None


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    """Following ordermon's imports, at load time or inside functions, never leads back to the
    module it started from."""
    assert _cycle(_graph()) is None


def test_the_cycle_finder_sees_a_circle() -> None:
    """The finder reports a circle drawn by hand, so the test above can fail."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_package_root_holds_only_the_shared_pieces() -> None:
    """Beside its subpackages, ordermon/ keeps only the modules every room shares."""
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    # pooler: the pooling mode, read by config, db (connect), migrate and cli alike.
    assert top == ["__init__", "__main__", "db", "errors", "migrate", "pooler"]
    rooms = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert rooms == ["cli", "config", "dev", "events", "ops", "providers", "sweep"]
