"""Where a finished call's result (or failure) goes next, along the plugs."""

from __future__ import annotations

from pyfi.broker.topology import SocketRoute
from pyfi.db.enums import PlugType
from pyfi.message import Message, derived_id
from pyfi.wiring import SocketSpec
from pyfi.worker.executor import Outcome


def downstream(
    socket: SocketSpec, call: Message, outcome: Outcome
) -> list[tuple[Message, SocketRoute]]:
    """The messages to publish for ``call``'s outcome, one per matching plug.

    A RESULT plug carries the value, an ERROR plug the failure. The value
    goes into the plug's argument when it names one, else as the first
    positional argument. Each message's id is derived from the source call
    and the plug, so a delivery repeated after a crash carries the same id.
    """
    wanted = PlugType.RESULT if outcome.ok else PlugType.ERROR
    value = (
        outcome.value
        if outcome.ok
        else {**(outcome.error or {}), "call_id": call.call_id, "socket": socket.name}
    )
    messages = []
    for plug in socket.outgoing:
        if plug.type is not wanted:
            continue
        args, kwargs = ([], {plug.argument: value}) if plug.argument else ([value], {})
        messages.append(
            (
                Message(
                    call_id=derived_id(call.call_id, plug.name),
                    tracking_id=call.tracking_id,
                    socket=plug.target,
                    args=args,
                    kwargs=kwargs,
                    parent_id=call.call_id,
                    argument=plug.argument,
                    plug=plug.name,
                ),
                plug.target_route,
            )
        )
    return messages
