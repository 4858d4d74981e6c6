"""The connection to the message broker: made from a URI, kept up, reconnected.

RabbitMQ is reached through kombu and py-amqp with publisher confirms on; the
embedded default is a folder (:mod:`pyfi.broker.filesystem`). The URI alone
chooses. What is declared, published or consumed on a connection lives in
:mod:`pyfi.broker.declaring`, :mod:`pyfi.broker.producing` and
:mod:`pyfi.broker.consuming`; :class:`pyfi.broker.Broker` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kombu.connection import Connection
from kombu.exceptions import OperationalError as KombuOperationalError

from pyfi.broker import amqp_transport, filesystem
from pyfi.broker.confirms import BrokerConnectionLost
from pyfi.config import filesystem_broker_dir, mask_url
from pyfi.errors import BrokerUnavailable

CONNECT_RETRIES = 3
# The longest wait between two attempts to reconnect (see BrokerConnection.reconnect).
RECONNECT_MAX_INTERVAL_S = 2.0


def connection_for(url: str, *, heartbeat_s: int = 0) -> Connection:
    """A kombu connection for a pyfi broker URI (not yet connected).

    ``heartbeat_s`` asks RabbitMQ for AMQP heartbeats at that interval (0:
    none). Only a connection whose owner calls :meth:`BrokerConnection.heartbeat_check`
    regularly may ask for them: the broker closes a connection that sends
    nothing for two intervals, and py-amqp sends heartbeats only when told.
    """
    if url.startswith("filesystem://"):
        root = filesystem_broker_dir(url)
        root.mkdir(parents=True, exist_ok=True)
        return Connection(
            transport=filesystem.Transport,
            transport_options={
                "pyfi_root": str(root),
                "data_folder_in": str(root / "queues"),
                "data_folder_out": str(root / "queues"),
                "control_folder": str(root / "control"),
            },
        )
    if url.startswith("memory://"):
        return Connection("memory://")
    return Connection(
        url,
        transport=amqp_transport.Transport,
        connect_timeout=5,
        heartbeat=heartbeat_s,
        transport_options={"confirm_publish": True},
    )


class BrokerConnection:
    """One kombu connection to the broker, and what kind of broker it reaches."""

    def __init__(self, url: str, *, heartbeat_s: int = 0) -> None:
        self.url = url
        self.kombu = connection_for(url, heartbeat_s=heartbeat_s)

    @property
    def is_filesystem(self) -> bool:
        """True for the embedded broker folder."""
        return self.url.startswith("filesystem://")

    @property
    def root(self) -> Path | None:
        """The broker folder of the embedded broker."""
        return filesystem_broker_dir(self.url) if self.is_filesystem else None

    @property
    def confirms(self) -> bool:
        """True when the broker confirms publishes (RabbitMQ); the embedded one writes at once."""
        return not (self.is_filesystem or self.url.startswith("memory://"))

    @property
    def acks_multiple(self) -> bool:
        """Whether one ack may settle every earlier delivery too (AMQP yes, virtual no)."""
        return bool(self.kombu.transport.driver_type == "amqp")

    def connect(self) -> None:
        """Connect (or reconnect), translating failure into :class:`BrokerUnavailable`."""
        try:
            self.kombu.ensure_connection(max_retries=CONNECT_RETRIES, interval_start=0.2)
        except (*self.kombu.connection_errors, OSError, KombuOperationalError) as exc:
            # ensure_connection gives up with kombu's OperationalError, which
            # is neither of the transport's connection errors nor an OSError.
            raise BrokerUnavailable(
                f"cannot reach the message broker {mask_url(self.url)}: {exc}; start it, or "
                "point --broker/PYFI_BROKER at a reachable one"
            ) from exc

    @property
    def lost_errors(self) -> tuple[type[BaseException], ...]:
        """The errors that mean the connection itself is gone (not a refused operation)."""
        return (
            *self.kombu.connection_errors,
            *self.kombu.recoverable_connection_errors,
            BrokerConnectionLost,
            KombuOperationalError,
            OSError,
        )

    def reconnect(
        self,
        *,
        retry_for_s: float | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        """Connect again, with backoff, for as long as allowed.

        kombu's reconnect pattern (``ensure_connection``): the wait between
        attempts grows from 0.2 s by 0.5 s up to :data:`RECONNECT_MAX_INTERVAL_S`,
        so a broker back after an outage is found within seconds.
        ``on_retry`` is called before every attempt; it may raise to stop
        trying (a stop requested meanwhile).

        Raises
        ------
        BrokerUnavailable
            Still unreachable after ``retry_for_s`` seconds (None: try for ever).
        """
        try:
            self.kombu.ensure_connection(
                max_retries=None,
                interval_start=0.2,
                interval_step=0.5,
                interval_max=RECONNECT_MAX_INTERVAL_S,
                callback=on_retry,
                timeout=retry_for_s,
            )
        except (*self.kombu.connection_errors, OSError, KombuOperationalError) as exc:
            waited = f" for {retry_for_s:g}s" if retry_for_s is not None else ""
            raise BrokerUnavailable(
                f"cannot reach the message broker {mask_url(self.url)}{waited}: {exc}"
            ) from exc

    def heartbeat_check(self) -> None:
        """Send a heartbeat if one is due; raise if the broker's have stopped coming.

        Call it about once a second on a connection made with ``heartbeat_s``.
        A half-open connection (the broker gone without a word) is then
        noticed within two heartbeat intervals.

        Raises
        ------
        Exception
            One of :attr:`lost_errors`: heartbeats were missed.
        """
        self.kombu.heartbeat_check()

    def release(self) -> None:
        """Close the connection; unacked messages go back to their queues."""
        try:
            self.kombu.release()
        except (*self.kombu.connection_errors, OSError):
            pass
