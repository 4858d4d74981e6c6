"""`flow scheduler ls | pause | resume`: the schedules of periodic sockets."""

from __future__ import annotations

import click

from pyfi.cli.context import CliContext, FlowGroup, pass_flow


@click.group("scheduler", cls=FlowGroup)
def scheduler_group() -> None:
    """Periodic sockets: list their schedules, pause and resume them."""


@scheduler_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_flow
def ls(flow: CliContext, as_json: bool) -> None:
    """List each scheduled socket: schedule, next and last fire, paused; and the leader."""
    from pyfi.cli.render import print_json, print_table
    from pyfi.scheduler.control import list_schedules
    from pyfi.scheduler.leader import current_leader
    from pyfi.scheduler.loop import utc_now

    with flow.transaction() as session:
        rows = list_schedules(session, utc_now())
    leader = current_leader(flow.database)
    if as_json:
        print_json({"leader": leader, "schedules": rows})
        return
    print_table(
        [
            ("Socket", "socket"),
            ("Schedule", "schedule"),
            ("Misfire", "misfire"),
            ("Next fire (UTC)", "next"),
            ("Last fire (UTC)", "last"),
            ("Paused", "paused"),
            ("Enabled", "enabled"),
        ],
        rows,
        title=f"Leader: {leader or 'none (no agent is running a scheduler)'}",
    )


def _pause_command(name: str, paused: bool, help_text: str) -> click.Command:
    @click.option("-s", "--socket", "socket", required=True, help="Name of the scheduled socket.")
    @pass_flow
    def callback(flow: CliContext, socket: str) -> None:
        from pyfi.scheduler.control import set_paused

        with flow.transaction() as session:
            set_paused(session, socket, paused)
        click.echo(f"{'Paused' if paused else 'Resumed'} the schedule of socket {socket}")

    return click.Command(
        name,
        params=callback.__click_params__,  # type: ignore[attr-defined]
        callback=callback,
        help=help_text,
    )


scheduler_group.add_command(
    _pause_command("pause", True, "Pause a socket's schedule: nothing fires until resumed.")
)
scheduler_group.add_command(
    _pause_command(
        "resume",
        False,
        "Resume a socket's schedule; instants missed while paused are not fired.",
    )
)
