"""Reading and replaying a socket's dead-letter queue.

Listing takes every dead letter without acknowledging it and then closes the
connection, which puts them all back: looking never consumes. Replaying
publishes the original call again (as attempt 1) to its socket and only then
acknowledges the dead letter, so a crash in between duplicates rather than
loses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pyfi.broker import Broker, SocketRoute
from pyfi.errors import InvalidValue
from pyfi.message import Message
from pyfi.naming import dead_letter_queue
from pyfi.worker.deadletter import read_dead_letter

MAX_LETTERS = 10_000


def _each_letter(broker: Broker, socket: str) -> Any:
    for _ in range(MAX_LETTERS):
        delivery = broker.get(dead_letter_queue(socket))
        if delivery is None:
            return
        yield delivery, read_dead_letter(delivery.body)


def list_dead_letters(broker_url: str, socket: str) -> list[dict[str, Any]]:
    """Every dead letter of ``socket``, oldest first; the queue is left as it was."""
    broker = Broker(broker_url)
    try:
        return [letter for _delivery, letter in _each_letter(broker, socket)]
    finally:
        broker.close()  # unacked letters go back to the queue


def replay_dead_letters(
    broker_url: str,
    socket: str,
    route_of: Callable[[str], SocketRoute],
    letter_id: str | None = None,
) -> list[str]:
    """Send dead calls back to their sockets; returns the ids replayed.

    Raises
    ------
    InvalidValue
        ``letter_id`` names no dead letter, or one whose call could not be read.
    """
    broker = Broker(broker_url)
    replayed: list[str] = []
    try:
        for delivery, letter in _each_letter(broker, socket):
            if letter_id is not None and letter.get("id") != letter_id:
                continue
            original = letter.get("message")
            if original is None:
                if letter_id is not None:
                    raise InvalidValue(
                        f"dead letter {letter_id} holds an unreadable message "
                        f"({letter.get('reason')}); it cannot be replayed"
                    )
                continue
            call = replace(Message.from_dict(original), attempt=1)
            broker.publish(call, route_of(call.socket))
            delivery.ack()
            replayed.append(str(letter.get("id")))
    finally:
        broker.close()
    if letter_id is not None and not replayed:
        raise InvalidValue(
            f"no dead letter {letter_id!r} on socket {socket}; see `flow dlq ls --socket {socket}`"
        )
    return replayed
