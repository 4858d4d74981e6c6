"""`flow validate`: check the whole network before a message finds the problem."""

from __future__ import annotations

from dataclasses import asdict

import click
from sqlalchemy import func, select

from pyfi.cli.context import CliContext, pass_flow
from pyfi.cli.render import note, print_json
from pyfi.db import models
from pyfi.errors import InvalidNetwork


@click.command("validate")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_flow
def validate(flow: CliContext, as_json: bool) -> None:
    """Check the network: cycles, arguments a function does not take, joins never fed.

    Arguments are checked against the signatures workers record when they
    start; sockets whose function no worker has run yet are listed as not
    checked. Exits 2 when there is any problem.
    """
    from pyfi.auth.guard import require
    from pyfi.db.enums import Right
    from pyfi.network.validate import network_problems, unchecked_sockets

    with flow.transaction() as session:
        require(session, Right.READ, "check the network")
        problems = network_problems(session)
        unchecked = unchecked_sockets(session)
        sockets = session.scalar(select(func.count()).select_from(models.Socket)) or 0
        plugs = session.scalar(select(func.count()).select_from(models.Plug)) or 0
    if as_json:
        print_json(
            {
                "valid": not problems,
                "sockets": sockets,
                "plugs": plugs,
                "problems": [asdict(problem) for problem in problems],
                "unchecked": unchecked,
            }
        )
    else:
        for problem in problems:
            click.echo(f"error: {problem.message}")
        if unchecked:
            note(
                f"note: {len(unchecked)} socket(s) not checked yet: a worker records a "
                f"function's signature when it starts: {', '.join(unchecked)}"
            )
    if problems:
        raise InvalidNetwork(f"{len(problems)} problem(s) found")
    if not as_json:
        click.echo(f"network is valid ({sockets} sockets, {plugs} plugs)")
