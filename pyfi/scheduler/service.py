"""The scheduler as an agent runs it: a thread with its own database, broker and election."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from pyfi.config import Settings
from pyfi.db.session import Database
from pyfi.scheduler.fires import Publish
from pyfi.scheduler.leader import Leadership, leadership_for
from pyfi.scheduler.loop import Scheduler

if TYPE_CHECKING:
    from pyfi.client.calls import Client

log = logging.getLogger("pyfi.scheduler")


class SchedulerThread:
    """Runs a :class:`Scheduler` for an agent until :meth:`stop`.

    The thread owns its database engine and its client (a broker connection
    is not shared between threads), so the agent's loop and the scheduler
    never wait on each other.
    """

    def __init__(self, settings: Settings, agent: str) -> None:
        self.settings = settings
        self.agent = agent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyfi-scheduler", daemon=True)

    def start(self) -> None:
        """Start electing and firing."""
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop firing and give the lead up."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from pyfi.client.calls import Client

        database = Database(self.settings.database_url)
        client = Client(self.settings, database)
        leadership: Leadership | None = None
        try:
            leadership = leadership_for(database, self.agent)
            scheduler = Scheduler(database, publisher(client), leadership, self.agent)
            scheduler.run(self._stop)
        except Exception:  # the agent goes on without a scheduler; say why
            log.exception("the scheduler stopped")
        finally:
            if leadership is not None:
                leadership.release()
            client.close()
            database.dispose()


def publisher(client: Client) -> Publish:
    """A publish function sending each fire through ``client`` with the fire's id."""

    def publish(socket: str, args: list[Any], kwargs: dict[str, Any], call_id: str) -> None:
        client.send(socket, args, kwargs, call_id=call_id, tracking_id=call_id)

    return publish
