"""`flow dlq`: see and replay the calls a socket gave up on."""

from __future__ import annotations

import click

from pyfi.cli.context import CliContext, FlowGroup, pass_flow
from pyfi.cli.render import note, print_json, print_table


@click.group("dlq", cls=FlowGroup)
def dlq_group() -> None:
    """Dead-letter queues: failed and unreadable calls."""


@dlq_group.command("ls")
@click.option(
    "-s", "--socket", "socket_name", required=True, help="Socket whose dead letters to show."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_flow
def list_letters(flow: CliContext, socket_name: str, as_json: bool) -> None:
    """List a socket's dead letters (without removing them)."""
    from pyfi import objects
    from pyfi.auth.guard import Target, require
    from pyfi.db import models
    from pyfi.db.enums import Right
    from pyfi.dlq import list_dead_letters

    with flow.transaction() as session:
        require(session, Right.READ, "list dead letters", Target("socket", socket_name))
        objects.get_by_name(session, models.Socket, socket_name)
    letters = list_dead_letters(flow.settings.broker_url, socket_name)
    if as_json:
        print_json(letters)
        return
    if not letters:
        note(f"No dead letters on {socket_name}.")
        return
    rows = [
        {
            "id": letter.get("id"),
            "reason": letter.get("reason"),
            "error": _error_line(letter.get("error")),
            "attempt": (letter.get("message") or {}).get("attempt"),
            "dead_at": letter.get("dead_at"),
        }
        for letter in letters
    ]
    print_table(
        [
            ("ID", "id"),
            ("Reason", "reason"),
            ("Error", "error"),
            ("Attempt", "attempt"),
            ("Dead at", "dead_at"),
        ],
        rows,
    )


@dlq_group.command("replay")
@click.option(
    "-s", "--socket", "socket_name", required=True, help="Socket whose dead letters to replay."
)
@click.option("--id", "letter_id", default=None, help="Replay only this dead letter.")
@pass_flow
def replay(flow: CliContext, socket_name: str, letter_id: str | None) -> None:
    """Send dead calls back to their socket, as first attempts."""
    from pyfi import objects
    from pyfi.auth.guard import Target, require
    from pyfi.broker import SocketRoute
    from pyfi.db import models
    from pyfi.db.enums import Right
    from pyfi.dlq import replay_dead_letters
    from pyfi.wiring import load_route

    with flow.transaction() as session:
        require(session, Right.RUN_TASK, "replay dead letters", Target("socket", socket_name))
        objects.get_by_name(session, models.Socket, socket_name)

    def route_of(socket: str) -> SocketRoute:
        with flow.transaction() as session:
            return load_route(session, socket)

    replayed = replay_dead_letters(flow.settings.broker_url, socket_name, route_of, letter_id)
    click.echo(f"Replayed {len(replayed)} call(s) to {socket_name}")


def _error_line(error: object) -> str:
    if not isinstance(error, dict):
        return ""
    return f"{error.get('type', '')}: {error.get('message', '')}"[:120]
