"""`flow proc start | stop | pause | resume | restart | remove`: ask agents to act.

Each command only records what the user wants (the processor's
``requested_status``); agents notice the change at once and reconcile.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from pyfi.cli.context import CliContext, FlowGroup, pass_flow
from pyfi.db.enums import RequestedStatus, Right

# The right each action needs (restart needs START_PROCESSOR, remove STOP_PROCESSOR:
# neither does more than start or stop; the row stays).
RIGHTS = {
    "start": Right.START_PROCESSOR,
    "stop": Right.STOP_PROCESSOR,
    "pause": Right.PAUSE_PROCESSOR,
    "resume": Right.RESUME_PROCESSOR,
    "restart": Right.START_PROCESSOR,
    "remove": Right.STOP_PROCESSOR,
}

ACTIONS = {
    "start": (RequestedStatus.RUNNING, "Start a processor's workers on the agents."),
    "stop": (RequestedStatus.STOPPED, "Stop a processor: its workers drain, then exit."),
    "pause": (RequestedStatus.PAUSED, "Pause: workers stay up but take no new calls."),
    "resume": (RequestedStatus.RUNNING, "Resume a paused processor."),
    "restart": (RequestedStatus.RUNNING, "Restart a processor's workers (rolling, no loss)."),
    "remove": (RequestedStatus.REMOVED, "Take a processor off every agent (the row stays)."),
}


@click.group("proc", cls=FlowGroup)
def proc_group() -> None:
    """Run or manage processors."""


def _action(action: str) -> click.Command:
    requested, help_text = ACTIONS[action]

    @click.option("-n", "--name", required=True, help="Processor name.")
    @pass_flow
    def callback(flow: CliContext, name: str) -> None:
        from pyfi import objects
        from pyfi.auth.guard import Target, require
        from pyfi.db import models

        with flow.transaction() as session:
            require(session, RIGHTS[action], f"{action} processors", Target("processor", name))
            processor = objects.get_by_name(session, models.Processor, name)
            processor.requested_status = requested
            if action == "restart":
                processor.restart_requested = datetime.now(UTC)
        click.echo(f"Requested {action} of processor {name}")

    return click.Command(
        action,
        params=callback.__click_params__,  # type: ignore[attr-defined]
        callback=callback,
        help=help_text,
    )


for _name in ACTIONS:
    proc_group.add_command(_action(_name))
