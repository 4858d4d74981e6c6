"""`flow task run`: call a socket from the shell, in pipes like any command."""

from __future__ import annotations

import ast
import json
import sys
from typing import Any

import click

from pyfi.cli.context import CliContext, FlowGroup, pass_flow
from pyfi.errors import CallFailed


def parse_data(text: str) -> Any:
    """A value from the command line or stdin: JSON, else a Python literal, else the text.

    The literal form keeps the reference's ``--data "['some data']"`` working;
    anything else (``HI THERE!``) is passed as the string it is.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def render_value(value: Any) -> str:
    """Strings print as themselves (so pipes compose); everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


@click.group("task", cls=FlowGroup)
def task_group() -> None:
    """Run tasks (calls of socket functions)."""


@task_group.command("run")
@click.option("-s", "--socket", "socket_name", required=True, help="Socket to call.")
@click.option("-d", "--data", default=None, help="The argument (JSON or literal); default: stdin.")
@click.option("--nowait", is_flag=True, help="Print the call id and return at once.")
@click.option(
    "-t",
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for the result.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON, strings too.")
@pass_flow
def run(
    flow: CliContext,
    socket_name: str,
    data: str | None,
    nowait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Call a socket with one argument and print its result."""
    from pyfi.client.calls import Client

    if data is None:
        if sys.stdin.isatty():
            raise click.UsageError("give --data VALUE, or pipe the value into stdin")
        data = sys.stdin.read().rstrip("\n")
    value = parse_data(data)
    with Client(flow.settings, flow.database) as client:
        if nowait:
            click.echo(client.send(socket_name, [value]).call_id)
            return
        try:
            result = client.call(socket_name, [value], timeout_s=timeout, confirm=True)
        except CallFailed as exc:
            if flow.debug and exc.traceback:
                click.echo(exc.traceback.rstrip(), err=True)
            raise
    click.echo(json.dumps(result) if as_json else render_value(result))
