"""What to declare on the broker for a socket, derived from the meta-model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyfi import naming


@dataclass(frozen=True)
class SocketRoute:
    """Where a socket's calls are published and consumed.

    ``arguments`` holds only what the user set on the queue object (length
    limits, TTL, expiry); pyfi adds dead-lettering so that a message the
    broker drops because of those limits lands in the socket's dead-letter
    queue instead of vanishing.
    """

    socket: str
    exchange: str
    exchange_type: str = "direct"
    durable: bool = True
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return naming.socket_queue(self.socket)

    @property
    def routing_key(self) -> str:
        return naming.routing_key(self.socket)

    @property
    def dead_letter_queue(self) -> str:
        return naming.dead_letter_queue(self.socket)

    def queue_arguments(self) -> dict[str, Any]:
        """The AMQP arguments of the socket's queue."""
        return {
            **self.arguments,
            "x-dead-letter-exchange": naming.DEFAULT_EXCHANGE,
            "x-dead-letter-routing-key": self.dead_letter_queue,
        }


def queue_arguments(
    *,
    max_length: int | None,
    max_length_bytes: int | None,
    message_ttl: int | None,
    expires: int | None,
) -> dict[str, Any]:
    """The AMQP arguments a queue object asks for; unset means none at all."""
    chosen = {
        "x-max-length": max_length,
        "x-max-length-bytes": max_length_bytes,
        "x-message-ttl": message_ttl,
        "x-expires": expires,
    }
    return {key: value for key, value in chosen.items() if value is not None}
