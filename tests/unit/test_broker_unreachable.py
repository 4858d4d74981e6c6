"""A broker that cannot be reached is reported as such, not as an unexpected error."""

from __future__ import annotations

import pytest

from pyfi.broker import Broker
from pyfi.errors import BrokerUnavailable


def test_an_unreachable_rabbitmq_is_broker_unavailable() -> None:
    # Given nothing listening on the broker's port (1 is never a RabbitMQ)
    # When a connection is made, then the error says what to do
    with pytest.raises(BrokerUnavailable, match=r"cannot reach the message broker .*PYFI_BROKER"):
        Broker("amqp://guest:guest@127.0.0.1:1/")
