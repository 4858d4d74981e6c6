"""`flow` as a user runs it: a real process, its exit code, stdout and stderr."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIRST_FLOW, requires_postgres

pytestmark = pytest.mark.slow


def _flow_executable() -> list[str]:
    installed = shutil.which("flow", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "pyfi.cli"]


def run_flow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `flow ARGS` in a child process with the test's (isolated) environment."""
    return subprocess.run(
        [*_flow_executable(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _build_first_flow(env: dict[str, str] | None = None) -> str:
    for command in (("db", "init"), *FIRST_FLOW):
        done = run_flow(*command, env=env)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    shown = run_flow("ls", "processor", "-n", "proc1", env=env)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_flow_embedded_default_needs_no_server(isolated_environment: Path) -> None:
    # Given no database, broker or backend configured at all
    # When the first flow is built and listed with real `flow` processes
    output = _build_first_flow()
    # Then it lives in the embedded SQLite file under the user's data directory
    assert "pyfi.processors.sample.do_this" in output
    assert "plug1" in output
    assert (isolated_environment / ".local" / "share" / "pyfi" / "pyfi.sqlite").exists()


@requires_postgres
@pytest.mark.postgres
def test_flow_on_postgres(postgres_url: str) -> None:
    # Given PYFI_DB pointing at PostgreSQL
    # When the first flow is built and listed with real `flow` processes
    output = _build_first_flow({"PYFI_DB": postgres_url})
    # Then the processor and its sockets show
    assert "pyfi.processors.sample.do_something" in output
    whoami = run_flow("whoami", env={"PYFI_DB": postgres_url})
    assert whoami.stdout.splitlines()[0] == "user: postgres"
    assert "database login: postgres" in whoami.stdout


def test_flow_unreachable_database_is_one_line_exit_1() -> None:
    # When the database refuses connections
    done = run_flow("--db", "postgresql://postgres@127.0.0.1:1/pyfi", "ls", "queues")
    # Then one line explains it, exit 1, no traceback
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("Error: cannot use the database")
    assert "PYFI_DB" in lines[0]


def test_flow_debug_shows_traceback() -> None:
    # When the same failure happens with --debug
    done = run_flow("--debug", "--db", "postgresql://postgres@127.0.0.1:1/pyfi", "ls", "queues")
    # Then the traceback is shown for the developer, and the exit code is unchanged
    assert done.returncode == 1
    assert "Traceback" in done.stderr


def test_flow_user_error_exits_2_without_traceback() -> None:
    # When the user refers to a processor that does not exist
    assert run_flow("db", "init").returncode == 0
    done = run_flow("add", "socket", "-n", "s", "-q", "q", "-pn", "nope", "-t", "f")
    # Then exit 2 and one line
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "Error: no queue named 'q'; see `flow ls queues` for the existing ones"
    )


def test_flow_help_lists_commands() -> None:
    done = run_flow("--help")
    assert done.returncode == 0
    for command in ("add", "config", "db", "delete", "ls", "update", "whoami"):
        assert f"  {command}" in done.stdout
