"""`flow` imports a sub-command's module only when it runs, and its help still lists them all."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from pyfi.cli import COMMANDS, cli
from pyfi.cli.context import LazyFlowGroup


def _fresh_root() -> click.Group:
    """A root group like `flow`'s with nothing imported yet, whatever other tests loaded."""
    return LazyFlowGroup("flow", lazy_commands=COMMANDS, callback=cli.callback, params=cli.params)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_table_entry_is_that_command_with_its_short_help(name: str) -> None:
    # Given the table's entry for a command
    module, attribute, short_help = COMMANDS[name]
    # When its module is imported
    command = getattr(importlib.import_module(module), attribute)
    # Then it is that command, and the table holds its own short help
    assert isinstance(command, click.Command)
    assert command.name == name
    assert command.get_short_help_str(limit=1000) == short_help


def test_help_lists_every_command_as_the_commands_themselves_would() -> None:
    # Given a root group with no command imported
    root = _fresh_root()
    runner = CliRunner()
    # When its help is shown before and after every command is imported
    lazy = runner.invoke(root, ["--help"], prog_name="flow")
    for name in COMMANDS:
        root.get_command(click.Context(root), name)
    loaded = runner.invoke(root, ["--help"], prog_name="flow")
    # Then both list the same commands, with the same (shortened) help
    assert lazy.exit_code == loaded.exit_code == 0
    assert lazy.output == loaded.output
    for name in COMMANDS:
        assert f"\n  {name} " in lazy.output


def test_a_loaded_command_is_kept_and_an_added_one_wins() -> None:
    # Given a root group and a command registered on it directly (as a test may)
    root = _fresh_root()

    @click.command("whoami")
    def replacement() -> None:
        """Stand-in."""

    root.add_command(replacement)
    context = click.Context(root)
    # When commands are looked up
    # Then the registered one is used, and a lazy one is imported once and kept
    assert root.get_command(context, "whoami") is replacement
    worker = root.get_command(context, "worker")
    assert worker is not None
    assert root.get_command(context, "worker") is worker
    assert root.get_command(context, "nope") is None


def test_a_mistyped_command_is_refused_with_a_suggestion() -> None:
    # When a command name is mistyped before any command is imported
    result = CliRunner().invoke(_fresh_root(), ["wroker"], prog_name="flow")
    # Then it is a usage error naming it, suggesting the command meant (click 8.4+)
    assert result.exit_code == 2
    assert "No such command 'wroker'." in result.output
    if hasattr(click.exceptions, "NoSuchCommand"):
        assert "Did you mean 'worker'?" in result.output


def test_worker_start_imports_no_database_code_and_no_other_command() -> None:
    # Given a fresh interpreter (this one has imported everything already)
    probe = textwrap.dedent(
        """
        import sys
        import click
        from pyfi.cli import cli
        group = cli.get_command(click.Context(cli), "worker")
        group.get_command(click.Context(group), "start")
        import pyfi.worker.factory
        print(" ".join(sorted(m for m in sys.modules if m.startswith(("pyfi.cli", "sqlalchemy")))))
        """
    )
    # When `flow worker start` is resolved and the worker factory imported
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    # Then only the worker command was imported, and no SQLAlchemy: the spec
    # load brings what it needs when it runs
    assert result.stdout.split() == ["pyfi.cli", "pyfi.cli.context", "pyfi.cli.worker"]
