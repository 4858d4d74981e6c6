"""One scheduled instant: its id, whether it is due, and its claim-and-publish.

The claim is a ``schedule_fires`` row, unique per (socket, instant), inserted
in the transaction that publishes the call and committed after the broker
took it. Two schedulers racing for one instant (a leader change, a
partitioned old leader) both try the insert: PostgreSQL makes the second
wait for the first's commit and then refuses it, SQLite serialises them, so
the instant is published once. A publish that fails rolls the claim back and
the instant stays due. Only a crash between the broker's confirm and the
commit can send a call twice; the second carries the same call id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from pyfi.db import models
from pyfi.db.enums import Misfire
from pyfi.db.session import Database
from pyfi.db.types import utcnow
from pyfi.message import derived_id
from pyfi.scheduler.timing import Schedule

# Fires are kept this long (the newest of each socket always): long enough
# for `flow scheduler ls` and for any late racer's claim to meet its row.
KEEP_FIRES = timedelta(days=1)

# publish(socket, args, kwargs, call_id): hand one call to the broker.
Publish = Callable[[str, list[Any], dict[str, Any], str], None]


@dataclass(frozen=True)
class Planned:
    """A scheduled socket as the scheduler reads it: schedule, policy, input, anchor.

    ``anchor`` is the last fired instant, or the socket's last change if that
    is later: changing a socket (pausing, resuming, a new schedule) starts
    its schedule afresh, and instants before the change are never caught up.
    """

    socket_id: uuid.UUID
    name: str
    schedule: Schedule
    misfire: Misfire
    catch_up: int
    input: str | None
    anchor: datetime

    def due(self, now: datetime) -> list[datetime]:
        """The instants to fire now, oldest first, as the misfire policy has it.

        ``skip`` fires the latest instant due (missed ones before it are
        dropped); ``catch-up`` fires the ``catch_up`` latest ones.
        """
        count = self.catch_up if self.misfire is Misfire.CATCH_UP else 1
        return self.schedule.latest(self.anchor, now, count)

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """The call's positional and keyword arguments, from the socket's input."""
        if self.input is None:
            return [], {}
        value = json.loads(self.input)
        if isinstance(value, list):
            return value, {}
        return [], dict(value)


def fire_id(socket_id: uuid.UUID, instant: datetime) -> str:
    """The id of a socket's fire at ``instant``: the same on every scheduler, every time."""
    return derived_id(str(socket_id), instant.astimezone(UTC).isoformat())


def claim_and_publish(
    database: Database, planned: Planned, instant: datetime, publish: Publish, agent: str
) -> bool:
    """Claim ``instant`` of the socket and publish its call; False if already claimed.

    Raises whatever the publish raises (the claim is then rolled back).
    """
    call_id = fire_id(planned.socket_id, instant)
    args, kwargs = planned.arguments()
    try:
        with database.transaction() as session:
            fire = models.ScheduleFire(
                id=uuid.UUID(call_id),
                socket_id=planned.socket_id,
                instant=instant,
                fired=utcnow(),
                agent=agent,
            )
            session.add(fire)
            session.flush()  # the claim: refused here if another scheduler holds it
            publish(planned.name, args, kwargs, call_id)
            fire.fired = utcnow()
            session.execute(
                delete(models.ScheduleFire).where(
                    models.ScheduleFire.socket_id == planned.socket_id,
                    models.ScheduleFire.instant < instant - KEEP_FIRES,
                )
            )
    except IntegrityError:
        return False
    return True
