"""Every broker name pyfi uses, decided in one place.

A queue object of the meta-model is an *exchange* of its type; each socket
has a durable AMQP queue bound to that exchange with the socket's name as the
routing key, plus a dead-letter queue and, for retries, delay queues whose
expired messages fall back into the socket's queue.
"""

from __future__ import annotations

DEFAULT_EXCHANGE = ""  # AMQP's default exchange: routes by queue name


def exchange(queue_object: str) -> str:
    """The exchange that stands for a queue object."""
    return queue_object


def socket_queue(socket: str) -> str:
    """The durable queue a socket's worker consumes."""
    return socket


def routing_key(socket: str) -> str:
    """The routing key that reaches a socket's queue through its exchange."""
    return socket


def dead_letter_queue(socket: str) -> str:
    """Where a socket's calls go when they fail for good or cannot be read."""
    return f"{socket}.dlq"


def delay_queue(socket: str, delay_ms: int) -> str:
    """A holding queue whose messages return to ``socket`` after ``delay_ms``."""
    return f"{socket}.delay.{delay_ms}"


def event_room(queue_object: str, processor: str) -> str:
    """The ``<queue>.<processor>`` prefix of a processor's live-event channels."""
    return f"{queue_object}.{processor}"
