"""Which wire live events travel on, decided from the settings alone.

* ``backend_url`` is ``redis://`` or ``rediss://``: Redis PUBLISH/PSUBSCRIBE,
  the cheapest fan-out there is, and what ``web`` relays to browsers.
* otherwise: a non-durable kombu *fanout* exchange, :data:`EXCHANGE`, on the
  broker. Each listener binds its own exclusive queue and filters on the
  routing key, which is the channel name. For the embedded
  ``filesystem://DIR`` broker the exchange lives in ``DIR/events`` and
  ``DIR/events-control``, apart from the call queues, so a slow listener can
  never be confused with a slow worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pyfi.config import Settings, filesystem_broker_dir, mask_url

EXCHANGE = "pyfi.events"
CHANNEL_HEADER = "x-pyfi-channel"
CONTENT_TYPE = "application/json"
# How often a listener on the filesystem transport looks for new files.
FILESYSTEM_POLL_S = 0.05
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class EventRoute:
    """Where live events go for one configuration."""

    kind: Literal["redis", "kombu"]
    url: str

    @property
    def label(self) -> str:
        """The transport as named in error messages, password masked."""
        what = "Redis" if self.kind == "redis" else "broker"
        return f"{what} at {mask_url(self.url)}"


def event_route(settings: Settings) -> EventRoute:
    """Choose the live-event transport for ``settings`` (see the module docstring)."""
    if settings.backend_url.startswith(("redis://", "rediss://")):
        return EventRoute("redis", settings.backend_url)
    return EventRoute("kombu", settings.broker_url)


def redis_client(url: str, *, socket_timeout: float | None = None) -> Any:
    """A Redis client for ``url`` (connects lazily), typed as ``Any`` like kombu."""
    import redis

    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=socket_timeout
    )


def filesystem_folders(broker_url: str) -> tuple[Path, Path]:
    """The (data, control) folders of the events exchange under a filesystem broker."""
    root = filesystem_broker_dir(broker_url)
    return root / "events", root / "events-control"


def kombu_api() -> Any:
    """The kombu package, imported on first use and typed as ``Any``.

    kombu's annotations are partial (mypy strict rejects most calls), so this
    boundary treats it as untyped rather than sprinkling ``type: ignore``.
    """
    import kombu

    return kombu


def kombu_connection(url: str, *, receiving: bool = False) -> Any:
    """A kombu connection (not yet connected) for the events exchange on ``url``.

    ``receiving``: for a listener, whose AMQP connection must keep kombu from
    inflating a compressed event, unbounded (see :mod:`pyfi.limits`).
    """
    connection_class = kombu_api().Connection

    if url.startswith("filesystem://"):
        from pyfi.events import fsqueue

        data, control = filesystem_folders(url)
        data.mkdir(parents=True, exist_ok=True)
        control.mkdir(parents=True, exist_ok=True)
        return connection_class(
            transport=fsqueue.Transport,
            transport_options={
                "data_folder_in": str(data),
                "data_folder_out": str(data),
                "control_folder": str(control),
                "polling_interval": FILESYSTEM_POLL_S,
            },
        )
    if receiving:
        from pyfi.broker import amqp_transport

        return connection_class(
            url, transport=amqp_transport.Transport, connect_timeout=CONNECT_TIMEOUT_S, heartbeat=0
        )
    return connection_class(url, connect_timeout=CONNECT_TIMEOUT_S, heartbeat=0)


def events_exchange() -> Any:
    """The fanout exchange every live event is published to.

    Non-durable: live events are worth nothing after a broker restart.
    """
    return kombu_api().Exchange(EXCHANGE, type="fanout", durable=False, auto_delete=False)
