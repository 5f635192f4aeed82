"""Issue 11, frictions 7-9: messages that say more, order numbers, `--version`."""

import importlib.metadata
import re

from tests.conftest import run_cli


def test_version_prints_the_installed_version() -> None:
    """`--version` and `-V` print `ordermon X.Y.Z` from the package metadata and exit 0."""
    expected = f"ordermon {importlib.metadata.version('ordermon')}"
    for flag in ("--version", "-V"):
        result = run_cli(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
        assert re.fullmatch(r"ordermon \d+\.\d+\.\d+\S*", result.stdout.strip())
        assert result.stderr == ""
