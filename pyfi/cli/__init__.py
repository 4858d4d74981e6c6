"""The `flow` command: the root group, its global options and its sub-commands."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from pyfi import __version__
from pyfi.cli.context import CliContext, LazyCommand, LazyFlowGroup
from pyfi.config import ENV_KEYS, OPTION_NAMES
from pyfi.masking import has_password

# Every sub-command, imported only when it runs (see LazyFlowGroup): `flow
# worker start` must not pay for the ORM models that `flow ls` needs. The help
# is each command's short help; tests/cli/test_lazy_commands.py keeps it in step.
COMMANDS: dict[str, LazyCommand] = {
    "add": ("pyfi.cli.objects", "add_group", "Add an object to the database."),
    "agent": (
        "pyfi.cli.agent",
        "agent_group",
        "Run the agent that deploys processors and supervises workers on this host.",
    ),
    "compose": (
        "pyfi.cli.compose",
        "compose_group",
        "Apply a network declared in a file, or export the network to one.",
    ),
    "config": ("pyfi.cli.config", "config_group", "Show the effective configuration."),
    "db": ("pyfi.cli.db", "db_group", "Database operations."),
    "delete": ("pyfi.cli.objects", "delete_group", "Delete an object from the database."),
    "dlq": ("pyfi.cli.dlq", "dlq_group", "Dead-letter queues: failed and unreadable calls."),
    "listen": (
        "pyfi.cli.listen",
        "listen",
        "Print the live events of a processor as they happen (Ctrl-C to stop).",
    ),
    "login": ("pyfi.cli.login", "login", "Log in to the configured database as a pyfi user."),
    "logout": (
        "pyfi.cli.login",
        "logout",
        "End your login on the configured database and forget its token.",
    ),
    "ls": ("pyfi.cli.listing", "ls_group", "List database objects and their relations."),
    "proc": ("pyfi.cli.proc", "proc_group", "Run or manage processors."),
    "scheduler": (
        "pyfi.cli.scheduler",
        "scheduler_group",
        "Periodic sockets: list their schedules, pause and resume them.",
    ),
    "task": ("pyfi.cli.task", "task_group", "Run tasks (calls of socket functions)."),
    "update": ("pyfi.cli.objects", "update_group", "Update a database object."),
    "validate": (
        "pyfi.cli.validate",
        "validate",
        "Check the network: cycles, arguments a function does not take, joins never fed.",
    ),
    "user": (
        "pyfi.cli.user",
        "user_group",
        "User commands: add, passwd, disable, enable, ls, roles.",
    ),
    "whoami": (
        "pyfi.cli.whoami",
        "whoami",
        "Print the pyfi user you act as, how you were identified, your roles and rights.",
    ),
    "worker": ("pyfi.cli.worker", "worker_group", "Run pyfi workers."),
}


@click.group(
    cls=LazyFlowGroup,
    lazy_commands=COMMANDS,
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
    _warn_of_passwords(options)
    flow = CliContext(options, os.environ)
    ctx.obj = flow
    ctx.call_on_close(flow.close)
    if write_config:
        from pyfi.cli.config import write_config_file

        write_config_file(flow)
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _warn_of_passwords(options: dict[str, Any]) -> None:
    """Say so when a URI option carries a password: `ps` and shell history show it."""
    for key, option in OPTION_NAMES.items():
        value = options.get(key)
        if isinstance(value, str) and has_password(value):
            click.echo(
                f"warning: the --{option} URI carries a password, which `ps` and shell history "
                f"show to others; set {ENV_KEYS[key]} or keep it in the ini file instead",
                err=True,
            )


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="flow")
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
