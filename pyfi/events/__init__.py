"""Live events: what workers say about calls while they run, for `flow listen` and the web UI.

Channels are named ``<queue>.<processor>.<channel>`` (``channel`` is one of
task, log, result, error). Each event is published once, on its channel;
subscribing to ``global`` means every channel (patterns ``*.task``, ``*.log``...).
A message carries one event or several of one channel, one JSON object per
line (:func:`join_events`, :func:`events_in`).
The transport follows the settings: Redis pub/sub when the result backend is
Redis, otherwise a fanout exchange on the broker (see
:mod:`pyfi.events.transport`). Delivery is best effort and never replayed:
the database holds the durable history.

::

    event.py        LiveEvent (frozen, JSON only) and channel names
    transport.py    which wire, from the settings
    publisher.py    EventPublisher: bounded queue + background thread
    subscriber.py   EventSubscriber: patterns in, LiveEvents out
    audience.py     whether anyone listens (Redis), so workers publish only then
"""

from __future__ import annotations

from pyfi.events.event import (
    CHANNELS,
    GLOBAL_CHANNEL,
    SCHEMA_VERSION,
    Channel,
    LiveEvent,
    channel_name,
    events_in,
    join_events,
    room_name,
)
from pyfi.events.publisher import EventPublisher
from pyfi.events.subscriber import EventSubscriber
from pyfi.events.transport import EXCHANGE, EventRoute, event_route

__all__ = [  # noqa: RUF022 - grouped by topic, as STYLE.md asks
    # the event
    "CHANNELS",
    "GLOBAL_CHANNEL",
    "SCHEMA_VERSION",
    "Channel",
    "LiveEvent",
    "channel_name",
    "room_name",
    # the wire
    "events_in",
    "join_events",
    "EXCHANGE",
    "EventRoute",
    "event_route",
    # sending and receiving
    "EventPublisher",
    "EventSubscriber",
]
