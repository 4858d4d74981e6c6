"""What a worker reports about each call: records for the database, live events.

Both sinks are optional and both are asynchronous: a call's path through the
worker only hands them values, never waits on a database or a network.
"""

from __future__ import annotations

import functools
import os
import socket as _socket
import time
from typing import Any, Protocol

from pyfi.message import Message
from pyfi.wiring import SocketSpec
from pyfi.worker.executor import Outcome

_ROUTINE_NOTES = {
    "received": "Received task {}",
    "running": "Prerun for task {}",
    "postrun": "Postrun for task {}",
}


@functools.cache
def routine_note(step: str, socket: str) -> str:
    """The note of a routine step, which names only the socket (the same for every call)."""
    return _ROUTINE_NOTES[step].format(socket)


class Sink(Protocol):
    """Receives one lifecycle step of a call, and when it happened (seconds since the epoch)."""

    def __call__(
        self,
        step: str,
        socket: SocketSpec,
        call: Message,
        outcome: Outcome | None,
        note: str,
        at: float,
    ) -> None: ...


class Telemetry:
    """Fans each lifecycle step of a call out to the configured sinks."""

    def __init__(
        self, processor: str, sinks: list[Sink] | None = None, closers: list[Any] | None = None
    ) -> None:
        self.processor = processor
        self.hostname = _socket.gethostname()
        self.pid = os.getpid()
        self._sinks = list(sinks or [])
        self._closers = list(closers or [])

    def _emit(
        self, step: str, socket: SocketSpec, call: Message, outcome: Outcome | None, note: str
    ) -> None:
        # One clock read per step, shared by the sinks: the record and the
        # live events of a step carry the same instant. A float, not a
        # datetime: taking and encoding one costs a fraction as much.
        at = time.time()
        for sink in self._sinks:
            sink(step, socket, call, outcome, note, at)

    def received(self, socket: SocketSpec, call: Message) -> None:
        self._emit("received", socket, call, None, routine_note("received", socket.name))

    def started(self, socket: SocketSpec, call: Message) -> None:
        """Received and running at once: the common path, reported as one step.

        A call that neither waits on a join nor was redelivered starts the
        moment it is received; one step instead of two spares a record
        update and a clock read per call. Listeners still see both events.
        """
        self._emit("started", socket, call, None, routine_note("received", socket.name))

    def joined(self, socket: SocketSpec, delivery: Message) -> None:
        """A plug delivered one argument of a join: that delivery is done.

        Reported for every delivery, the one that fires the join included:
        the join runs under an id of its own, so nothing else would end the
        delivery's record, which would stay ``received`` for good.
        """
        self._emit(
            "joined", socket, delivery, None, f"Delivered {delivery.argument} to join {socket.name}"
        )

    def running(self, socket: SocketSpec, call: Message) -> None:
        self._emit("running", socket, call, None, routine_note("running", socket.name))

    def finished(self, socket: SocketSpec, call: Message, outcome: Outcome) -> None:
        self._emit("postrun", socket, call, outcome, routine_note("postrun", socket.name))

    def retrying(self, socket: SocketSpec, call: Message, outcome: Outcome, delay_s: float) -> None:
        error = (outcome.error or {}).get("type", "error")
        self._emit(
            "retry",
            socket,
            call,
            outcome,
            f"{error} on attempt {call.attempt}; retrying in {delay_s:g}s",
        )

    def failed(self, socket: SocketSpec, call: Message, outcome: Outcome) -> None:
        error = outcome.error or {}
        self._emit(
            "failure",
            socket,
            call,
            outcome,
            f"{error.get('type', 'error')}: {error.get('message', '')}"[:500],
        )

    def close(self) -> None:
        """Flush and stop every sink."""
        for closer in self._closers:
            closer()
