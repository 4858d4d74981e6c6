"""How `flow` reports what goes wrong: one line for a surprise, nothing for a closed pipe."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import click
from click.testing import CliRunner

from pyfi.cli.context import FlowGroup


def _group_raising(exc: BaseException) -> click.Group:
    @click.group(cls=FlowGroup)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise exc

    return group


def test_an_unexpected_error_is_one_line_with_a_hint_and_exit_1() -> None:
    result = CliRunner().invoke(_group_raising(ValueError("bad thing\nmore")), ["boom"])

    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: unexpected ValueError: bad thing (rerun with --debug for the traceback)"
    )


def test_a_closed_pipe_is_not_reported_as_an_error() -> None:
    result = CliRunner().invoke(_group_raising(BrokenPipeError(32, "Broken pipe")), ["boom"])

    assert result.exit_code == 1
    assert "Error" not in result.output


def test_a_reader_that_stops_early_leaves_nothing_on_stderr() -> None:
    # `flow ls calls | head`: the command writes far more than the pipe holds
    # and the reader closes its end after the first line.
    script = textwrap.dedent(
        """
        import click
        from pyfi.cli.context import FlowGroup

        @click.group(cls=FlowGroup)
        def group():
            pass

        @group.command()
        def lines():
            for number in range(200_000):
                click.echo(f"line {number}")

        group(["lines"], prog_name="flow")
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    with process.stderr:
        stderr = process.stderr.read().decode()
    process.wait(timeout=30)

    assert first == b"line 0\n"
    assert stderr == ""
    assert process.returncode == 1
