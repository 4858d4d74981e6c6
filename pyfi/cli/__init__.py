"""The `flow` command: the root group, its global options and its sub-commands."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from pyfi import __version__
from pyfi.cli.context import CliContext, FlowGroup


@click.group(
    cls=FlowGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["--help"], "max_content_width": 100},
)
@click.option("--debug", is_flag=True, default=None, help="Show tracebacks [env PYFI_DEBUG].")
@click.option("-d", "--db", "database_url", metavar="URI", help="Database URI [env PYFI_DB].")
@click.option(
    "--backend", "backend_url", metavar="URI", help="Result backend URI [env PYFI_BACKEND]."
)
@click.option("--broker", "broker_url", metavar="URI", help="Message broker URI [env PYFI_BROKER].")
@click.option(
    "-i", "--ini", "ini_path", metavar="FILE", help="Ini configuration file [env PYFI_INI]."
)
@click.option(
    "-c", "--config", "write_config", is_flag=True, help="Write the ini file (asks for each URI)."
)
@click.version_option(__version__, prog_name="flow")
@click.pass_context
def cli(ctx: click.Context, /, write_config: bool, **options: Any) -> None:
    """CLI for creating and managing pyfi flow networks.

    With no server configured, flow uses an embedded SQLite database and a
    local broker folder under your data directory; see `flow config show`.
    """
    flow = CliContext(options, os.environ)
    ctx.obj = flow
    ctx.call_on_close(flow.close)
    if write_config:
        from pyfi.cli.config import write_config_file

        write_config_file(flow)
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _register() -> None:
    from pyfi.cli.agent import agent_group
    from pyfi.cli.compose import compose_group
    from pyfi.cli.config import config_group
    from pyfi.cli.db import db_group
    from pyfi.cli.dlq import dlq_group
    from pyfi.cli.listen import listen
    from pyfi.cli.listing import ls_group
    from pyfi.cli.objects import add_group, delete_group, update_group
    from pyfi.cli.proc import proc_group
    from pyfi.cli.task import task_group
    from pyfi.cli.validate import validate
    from pyfi.cli.whoami import whoami
    from pyfi.cli.worker import worker_group

    for command in (
        agent_group,
        compose_group,
        config_group,
        db_group,
        dlq_group,
        add_group,
        update_group,
        delete_group,
        ls_group,
        listen,
        proc_group,
        task_group,
        validate,
        whoami,
        worker_group,
    ):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="flow")
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
