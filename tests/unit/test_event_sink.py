"""What a worker's event sink publishes for each lifecycle step of a call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pyfi.broker.topology import SocketRoute
from pyfi.events import LiveEvent
from pyfi.message import Message
from pyfi.wiring import SocketSpec
from pyfi.worker.executor import Outcome
from pyfi.worker.sinks import EventSink
from pyfi.worker.telemetry import Telemetry

SOCKET = SocketSpec(
    name="proc.join",
    id="",
    task="join",
    queue="pyfi.q",
    route=SocketRoute("proc.join", "proc.join.exchange"),
    wait=True,
    join_arguments=("left", "right"),
    outgoing=(),
)


class Collected:
    """Stands in for the publisher's queue: what the sink hands over, per hand-over."""

    def __init__(self, *, listened: bool = True) -> None:
        self.handovers: list[list[LiveEvent]] = []
        self.listened = listened

    def publish_many(self, events: Sequence[tuple[str, str]]) -> None:
        decoded = [LiveEvent.from_json(payload) for _channel, payload in events]
        for (channel, _payload), event in zip(events, decoded, strict=True):
            assert channel == event.channel_name
        self.handovers.append(decoded)


def _telemetry(*, listened: bool = True) -> tuple[Telemetry, Collected]:
    collected = Collected(listened=listened)
    return Telemetry("proc", [EventSink(collected, "proc")]), collected  # type: ignore[arg-type]


def test_a_started_call_shows_as_received_then_running_at_one_instant() -> None:
    # Given a worker's telemetry publishing live events
    telemetry, collected = _telemetry()
    call = Message.new(SOCKET.name, [1])
    # When a call starts (received and running at once) and finishes
    telemetry.started(SOCKET, call)
    telemetry.finished(SOCKET, call, Outcome(ok=True, value={"total": 3}))
    # Then listeners see received, running, postrun and the result, each step handed over whole
    started, finished = collected.handovers
    assert [(e.channel, e.state) for e in started] == [("task", "received"), ("task", "running")]
    assert [(e.channel, e.state) for e in finished] == [("task", "postrun"), ("result", "postrun")]
    assert started[0].date == started[1].date
    assert datetime.fromisoformat(started[0].date).tzinfo == UTC
    assert {(e.call_id, e.tracking_id) for e in started + finished} == {
        (call.call_id, call.tracking_id)
    }
    assert started[0].data == {"note": "Received task proc.join"}
    assert started[1].data == {"note": "Prerun for task proc.join"}
    assert finished[1].data == {"preview": "{'total': 3}"}


def test_each_join_delivery_names_its_own_argument() -> None:
    # Given two plug deliveries into the same waiting socket
    telemetry, collected = _telemetry()
    left = Message.new(SOCKET.name, kwargs={"left": 1}, argument="left")
    right = Message.new(SOCKET.name, kwargs={"right": 2}, argument="right")
    # When each is recorded as joined
    telemetry.joined(SOCKET, left)
    telemetry.joined(SOCKET, right)
    # Then each event's note names the argument it delivered (not the first one's)
    notes = [handover[0].data for handover in collected.handovers]
    assert notes == [
        {"note": "Delivered left to join proc.join"},
        {"note": "Delivered right to join proc.join"},
    ]


def test_nothing_is_built_nor_handed_over_while_nobody_listens() -> None:
    # Given a publisher that knows nobody subscribes
    telemetry, collected = _telemetry(listened=False)
    call = Message.new(SOCKET.name, [1])
    # When a call starts, finishes and another fails
    telemetry.started(SOCKET, call)
    telemetry.finished(SOCKET, call, Outcome(ok=True, value=3))
    # Then the sink handed nothing over
    assert collected.handovers == []
    # And once someone listens, the next step is published again
    collected.listened = True
    telemetry.finished(SOCKET, call, Outcome(ok=True, value=3))
    assert [[e.state for e in handover] for handover in collected.handovers] == [
        ["postrun", "postrun"]
    ]
