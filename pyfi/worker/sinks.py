"""The two telemetry sinks: call records for the database, live events for listeners.

Both only hand values to a background writer (see :mod:`pyfi.recorder` and
:mod:`pyfi.events`): nothing here waits on the database or the network.
"""

from __future__ import annotations

import socket as _socket
import uuid
from datetime import UTC, datetime

from pyfi.db.enums import CallState, EventName
from pyfi.events import EventPublisher
from pyfi.events.event import encode_event
from pyfi.message import Message
from pyfi.recorder import CallRecorder, CallUpdate
from pyfi.wiring import SocketSpec
from pyfi.worker.executor import Outcome

# Lifecycle step -> (call state, event row or None, live-event state). The
# routine steps write no event row: the call row's timestamps record them.
STEPS: dict[str, tuple[CallState, EventName | None, str]] = {
    "received": (CallState.RECEIVED, None, "received"),
    "running": (CallState.RUNNING, None, "running"),
    "postrun": (CallState.FINISHED, None, "postrun"),
    "joined": (CallState.FINISHED, None, "joined"),
    "retry": (CallState.RETRYING, EventName.RETRY, "retry"),
    "failure": (CallState.DEAD, EventName.FAILURE, "failure"),
}
# The steps that first see a call in this worker: their update carries its identity.
FIRST_STEPS = frozenset({"received", "joined"})
PREVIEW_CHARS = 200


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


class RecordSink:
    """Turns lifecycle steps into merged ``calls`` rows, and retries and failures into events.

    A call that runs once and succeeds costs one row: its three steps merge
    in the recorder's memory into one upsert carrying ``received``,
    ``started`` and ``finished``.
    """

    def __init__(self, recorder: CallRecorder, socket_ids: dict[str, str]) -> None:
        self.recorder = recorder
        self.socket_ids = {name: uuid.UUID(value) for name, value in socket_ids.items() if value}
        self.hostname = _socket.gethostname()

    def __call__(
        self, step: str, socket: SocketSpec, call: Message, outcome: Outcome | None, note: str
    ) -> None:
        state, event, _live = STEPS[step]
        now = datetime.now(UTC)
        call_id = uuid.UUID(call.call_id)
        if step in FIRST_STEPS:
            # The call's identity, once: later steps merge into this update in
            # memory, or into its row, and carry only what changed.
            update = CallUpdate(
                id=call_id,
                name=socket.name,
                socket_id=self.socket_ids.get(socket.name),
                tracking_id=uuid.UUID(call.tracking_id),
                parent_id=_uuid(call.parent_id),
                argument=call.argument,
                idempotency_key=call.idempotency_key,
                state=state,
                attempt=call.attempt,
                hostname=self.hostname,
                received=now,
                finished=now if state.is_final else None,
            )
        else:
            update = CallUpdate(
                id=call_id,
                state=state,
                attempt=call.attempt,
                started=now if step == "running" else None,
                finished=now if state.is_final else None,
                error=note if event is not None else None,
            )
        self.recorder.record_call(update)
        if event is not None:
            self.recorder.record_event(call_id, event, note, now)


class EventSink:
    """Publishes each lifecycle step live on ``<queue>.<processor>.task`` (and more)."""

    def __init__(self, publisher: EventPublisher, processor: str) -> None:
        self.publisher = publisher
        self.processor = processor

    def __call__(
        self, step: str, socket: SocketSpec, call: Message, outcome: Outcome | None, note: str
    ) -> None:
        live_state = STEPS[step][2]
        common = {
            "queue": socket.queue,
            "processor": self.processor,
            "socket": socket.name,
            "call_id": call.call_id,
            "tracking_id": call.tracking_id,
        }
        publish = self.publisher.publish
        publish(encode_event("task", live_state, data={"note": note}, **common))
        if step == "postrun" and outcome is not None:
            preview = repr(outcome.value)[:PREVIEW_CHARS]
            publish(encode_event("result", live_state, data={"preview": preview}, **common))
        elif step in ("retry", "failure") and outcome is not None and outcome.error:
            error = {"type": outcome.error.get("type"), "message": outcome.error.get("message")}
            publish(encode_event("error", live_state, data=error, **common))
