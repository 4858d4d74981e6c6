"""`flow agent start`: run this host's agent."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from pyfi.cli.context import CliContext, FlowGroup, configure_logging, pass_flow


@click.group("agent", cls=FlowGroup)
def agent_group() -> None:
    """Run the agent that deploys processors and supervises workers on this host."""


@agent_group.command("start")
@click.option("-n", "--name", default=None, help="Agent (and node) name [default: hostname].")
@click.option(
    "-cp",
    "--cpus",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs to offer [default: all of this host's].",
)
@click.option(
    "-p",
    "--port",
    type=click.IntRange(0, 65535),
    default=8090,
    show_default=True,
    help="Health endpoint port (0 picks a free one).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Health endpoint address (0.0.0.0 in containers).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where checkouts, virtualenvs and logs go [default: DATA/agent/NAME].",
)
@click.option("--clean", is_flag=True, help="Remove the work directory before starting.")
@click.option(
    "--venv-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where processor virtualenvs are cached [default: WORKDIR/venvs].",
)
@click.option(
    "--drain-grace",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a worker told to stop (a roll-over, a stop) may take to finish its "
    "calls before it is killed.",
)
@pass_flow
def start(
    flow: CliContext,
    name: str | None,
    cpus: int | None,
    port: int,
    host: str,
    workdir: Path | None,
    clean: bool,
    venv_cache: Path | None,
    drain_grace: float,
) -> None:
    """Start an agent: it runs until SIGTERM or Ctrl-C, then drains its workers."""
    from pyfi.agent.agent import Agent, AgentOptions
    from pyfi.auth.actor import serving_as

    configure_logging(flow)
    name = name or socket.gethostname()
    settings = flow.settings
    options = AgentOptions(
        name=name,
        workdir=workdir or settings.data_dir / "agent" / name,
        cpus=cpus,
        host=host,
        port=port,
        clean=clean,
        venv_cache=venv_cache,
        drain_grace_s=drain_grace,
    )
    _check_start(flow, name)
    with serving_as(f"agent {name}") as service:
        flow.database.act_as(service)
        Agent(settings, options).run()


def _check_start(flow: CliContext, name: str) -> None:
    """Check START_AGENT as whoever started the agent (the process then serves)."""
    from pyfi.auth.guard import Target, require
    from pyfi.db.enums import Right

    with flow.transaction() as session:
        require(session, Right.START_AGENT, "start agents", Target("agent", name))
