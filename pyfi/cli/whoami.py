"""`flow whoami`: the database user this CLI acts as."""

from __future__ import annotations

import click

from pyfi.cli.context import CliContext, pass_flow


@click.command("whoami")
@pass_flow
def whoami(flow: CliContext) -> None:
    """Print the current database user (the owner of rows you create)."""
    click.echo(flow.database.current_user())
