"""`flow worker start`: what it refuses before it starts consuming."""

from __future__ import annotations

from pathlib import Path

from pyfi.db.session import Database
from pyfi.wiring import load_processor, spec_to_json
from tests.conftest import Flow


def test_worker_start_needs_a_processor_or_a_spec(first_flow: Flow) -> None:
    assert "name the processor to serve with --processor (or hand over its spec with --spec)" in (
        first_flow.fails("worker", "start")
    )


def test_worker_start_refuses_a_spec_of_another_processor(
    first_flow: Flow, database: Database, tmp_path: Path
) -> None:
    # Given the spec of proc1, written as an agent writes it
    spec_file = tmp_path / "proc1.spec.json"
    with database.connect() as connection:
        spec_file.write_text(spec_to_json(load_processor(connection, "proc1")))
    # When a worker is asked to serve another processor with it, then it refuses in one line
    error = first_flow.fails("worker", "start", "-p", "proc2", "--spec", str(spec_file))
    assert error == f"Error: {spec_file} describes processor 'proc1', not 'proc2'"


def test_worker_start_refuses_a_file_that_is_not_a_spec(first_flow: Flow, tmp_path: Path) -> None:
    spec_file = tmp_path / "broken.spec.json"
    spec_file.write_text('{"format": 7}')
    error = first_flow.fails("worker", "start", "--spec", str(spec_file))
    assert error.startswith("Error: processor spec format 7; this pyfi reads format 1")


def test_worker_start_refuses_a_module_that_is_not_in_its_checkout(
    first_flow: Flow, tmp_path: Path
) -> None:
    # Given a processor on the standard subprocess module, and a checkout without that file
    first_flow("add", "processor", "-n", "shell", "-g", "file:///repo", "-m", "subprocess")
    first_flow(
        "add", "socket", "-n", "shell.run", "-q", "pyfi.queue1", "-pn", "shell", "-t", "getoutput"
    )
    # When a worker is started for it, then it refuses in one line, exit 2
    error = first_flow.fails("worker", "start", "-p", "shell", "--path", str(tmp_path))
    assert "processor module 'subprocess' is not a file of its checkout" in error


def test_worker_start_without_a_checkout_needs_the_package_allowed(first_flow: Flow) -> None:
    # Given the first flow's processor, whose module is not installed under an allowed name
    # When a worker is started without --path, then it says how to allow it
    error = first_flow.fails("worker", "start", "-p", "proc1")
    assert "--path" in error
    assert "--allow-installed pyfi" not in error  # pyfi's own modules are never allowed
    assert "belongs to the pyfi package" in error


def test_a_worker_that_ends_leaves_its_process_acting_as_before(first_flow: Flow) -> None:
    from pyfi.auth.actor import process_actor

    # Given a worker start that gets past its checks and then fails to build
    first_flow.fails("worker", "start", "-p", "proc1")
    # Then this process no longer acts as that worker's service
    assert process_actor() is None
