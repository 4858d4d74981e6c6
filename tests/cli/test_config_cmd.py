"""`flow --config`, `flow config show`, and how configuration errors reach the user."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pyfi.cli import cli
from pyfi.config import default_ini_path, embedded_defaults, read_ini, write_ini

UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:1/x"


def run(*args: str, input: str | None = None) -> Result:
    """`flow` in-process, with the test's (monkeypatched) environment."""
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=True)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def assert_one_line_user_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = error_lines(result)
    assert len(errors) == 1, result.output
    return errors[0]


def test_config_interactive_writes_default_ini(tmp_path: Path) -> None:
    # Given no ini file and a new database URI typed at the first prompt only
    data_dir = embedded_defaults(default_ini_path().parent)  # noqa: F841  (documentation only)
    defaults = embedded_defaults(Path.home() / ".local" / "share" / "pyfi")
    # When `flow --config` is answered (database, backend, broker)
    result = run("--config", input="postgresql://u@db.example/pyfi\n\n\n")
    # Then the default ini holds the answer and the kept current values, owner-only
    path = default_ini_path()
    assert result.exit_code == 0, result.output
    assert f"Configuration file created at {path}" in result.output
    assert read_ini(path, required=True) == {
        "database_url": "postgresql://u@db.example/pyfi",
        "broker_url": defaults["broker_url"],
        "backend_url": defaults["backend_url"],
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
