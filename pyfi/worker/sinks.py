"""The two telemetry sinks: call records for the database, live events for listeners.

Both only hand values to a background writer (see :mod:`pyfi.recorder` and
:mod:`pyfi.events`): nothing here waits on the database or the network.
"""

from __future__ import annotations

import reprlib
import socket as _socket
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pyfi.db.enums import CallState, EventName
from pyfi.events import EventPublisher
from pyfi.events.event import Channel, EventTemplate, call_fields, iso_ms
from pyfi.message import Message
from pyfi.recorder import CallRecorder
from pyfi.wiring import SocketSpec
from pyfi.worker.executor import Outcome
from pyfi.worker.telemetry import routine_note

# Lifecycle step -> (call state, event row or None, live-event state). The
# routine steps write no event row: the call row's timestamps record them.
STEPS: dict[str, tuple[CallState, EventName | None, str]] = {
    "received": (CallState.RECEIVED, None, "received"),
    "started": (CallState.RUNNING, None, "running"),  # received and running at once
    "running": (CallState.RUNNING, None, "running"),
    "postrun": (CallState.FINISHED, None, "postrun"),
    "joined": (CallState.FINISHED, None, "joined"),
    "retry": (CallState.RETRYING, EventName.RETRY, "retry"),
    "failure": (CallState.DEAD, EventName.FAILURE, "failure"),
}
# The steps that first see a call in this worker: their update carries its
# identity. ("joined" always follows "received": it keeps that instant.)
FIRST_STEPS = frozenset({"received", "started"})


class _StepRecord(NamedTuple):
    """What a step writes into its call's row, decided once per step, not per call."""

    state: CallState
    event: EventName | None
    identity: bool  # the first sighting: name, tracking id, received...
    started: bool
    finished: bool


_STEP_RECORDS = {
    step: _StepRecord(
        state, event, step in FIRST_STEPS, step in ("started", "running"), state.is_final
    )
    for step, (state, event, _live) in STEPS.items()
}
# The steps whose note names only the socket, so their live event's data is
# fixed per socket. (A join's note names the argument delivered: not fixed.)
ROUTINE_STEPS = frozenset({"received", "running", "postrun"})
# The task events a step publishes: "started" stands for two.
TASK_EVENTS = {step: (step,) for step in STEPS} | {"started": ("received", "running")}
PREVIEW_CHARS = 200


def _previewer() -> reprlib.Repr:
    """A ``repr`` that looks at no more of a value than a preview shows."""
    bounded = reprlib.Repr()
    bounded.maxlevel = 3
    for name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset"):
        setattr(bounded, name, 20)
    bounded.maxdeque = 20
    bounded.maxstring = bounded.maxlong = bounded.maxother = PREVIEW_CHARS
    return bounded


_PREVIEWER = _previewer()


def preview(value: object) -> str:
    """At most :data:`PREVIEW_CHARS` of ``value``'s repr, without building all of it.

    Plain scalars (the common result) take the built-in ``repr``; containers
    and long strings are looked at only as far as a preview shows, so a
    large result costs no more than a small one.
    """
    try:
        if value is None or isinstance(value, bool | int | float):
            return repr(value)[:PREVIEW_CHARS]
        return _PREVIEWER.repr(value)[:PREVIEW_CHARS]
    except ValueError:  # an int beyond the interpreter's digit limit
        return f"<{type(value).__name__} too large to show>"


class RecordSink:
    """Turns lifecycle steps into merged ``calls`` rows, and retries and failures into events.

    A call that runs once and succeeds costs one row: its steps (``started``,
    or ``received`` then ``running``, then ``postrun``) merge in the
    recorder's memory into one upsert carrying ``received``, ``started`` and
    ``finished``. Ids stay the text the message carries.
    """

    def __init__(self, recorder: CallRecorder, socket_ids: dict[str, str]) -> None:
        self.recorder = recorder
        self.socket_ids = {name: value for name, value in socket_ids.items() if value}
        self.hostname = _socket.gethostname()

    def __call__(
        self,
        step: str,
        socket: SocketSpec,
        call: Message,
        outcome: Outcome | None,
        note: str,
        at: float,
    ) -> None:
        record = _STEP_RECORDS[step]
        values: dict[str, Any] = {"state": record.state, "attempt": call.attempt}
        if record.identity:
            # The call's identity, once: later steps merge into this update in
            # memory, or into its row, and carry only what changed.
            values["name"] = socket.name
            values["tracking_id"] = call.tracking_id
            values["hostname"] = self.hostname
            values["received"] = at
            for name, value in (
                ("socket_id", self.socket_ids.get(socket.name)),
                ("parent_id", call.parent_id),
                ("argument", call.argument),
                ("idempotency_key", call.idempotency_key),
            ):
                if value is not None:
                    values[name] = value
        if record.started:
            values["started"] = at
        if record.finished:
            values["finished"] = at
        event = record.event
        if event is not None:
            values["error"] = note
        self.recorder.record_call_values(call.call_id, values)
        if event is not None:
            self.recorder.record_event(call.call_id, event, note, datetime.fromtimestamp(at, UTC))


class EventSink:
    """Publishes each lifecycle step live on ``<queue>.<processor>.task`` (and more).

    Only while someone listens (:attr:`EventPublisher.listened`): a step
    nobody would receive costs nothing but that check.
    """

    def __init__(self, publisher: EventPublisher, processor: str) -> None:
        self.publisher = publisher
        self.processor = processor
        self._templates: dict[tuple[str, str, str], EventTemplate] = {}

    def _template(self, socket: SocketSpec, step: str, channel: Channel) -> EventTemplate:
        key = (socket.name, step, channel)
        template = self._templates.get(key)
        if template is None:
            routine = channel == "task" and step in ROUTINE_STEPS
            template = EventTemplate(
                channel,
                STEPS[step][2],
                queue=socket.queue,
                processor=self.processor,
                socket=socket.name,
                data={"note": routine_note(step, socket.name)} if routine else None,
            )
            self._templates[key] = template
        return template

    def __call__(
        self,
        step: str,
        socket: SocketSpec,
        call: Message,
        outcome: Outcome | None,
        note: str,
        at: float,
    ) -> None:
        if not self.publisher.listened:
            return  # nobody subscribes: Redis would drop them
        # The events of a step share one stamp and one encoding of the ids,
        # and reach the publisher together.
        date = iso_ms(at)
        ids = call_fields(call.call_id, call.tracking_id)
        events = [
            self._template(socket, task, "task").fill(
                ids, None if task in ROUTINE_STEPS else {"note": note}, date=date
            )
            for task in TASK_EVENTS[step]
        ]
        if step == "postrun" and outcome is not None:
            preview_data = {"preview": preview(outcome.value)}
            events.append(self._template(socket, step, "result").fill(ids, preview_data, date=date))
        elif step in ("retry", "failure") and outcome is not None and outcome.error:
            error = {"type": outcome.error.get("type"), "message": outcome.error.get("message")}
            events.append(self._template(socket, step, "error").fill(ids, error, date=date))
        self.publisher.publish_many(events)
