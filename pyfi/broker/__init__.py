"""The message broker: RabbitMQ in production, a crash-safe folder when embedded."""

from __future__ import annotations

from pyfi.broker.broker import Broker, connection_for
from pyfi.broker.topology import SocketRoute, queue_arguments

__all__ = ["Broker", "SocketRoute", "connection_for", "queue_arguments"]
