"""One scheduled instant: its id, whether it is due, and its claim-and-publish.

The claim is a ``schedule_fires`` row, unique per (socket, instant),
committed *before* the call is published: two schedulers racing for one
instant (a leader change, a partitioned old leader) both try the insert;
PostgreSQL makes the second wait for the first's commit and then refuses
it, SQLite serialises them; only the one whose claim committed publishes.
Fires are therefore at most once. A publish that fails releases the claim,
so the instant is due again; a scheduler that dies between its claim and
its publish loses that one instant (its row keeps ``fired`` empty), which a
duplicate call would have cost more: workers do not deduplicate calls.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Subquery, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from pyfi.db import models
from pyfi.db.enums import Misfire
from pyfi.db.session import Database
from pyfi.db.types import utcnow
from pyfi.errors import first_line
from pyfi.message import derived_id
from pyfi.scheduler.timing import Schedule

log = logging.getLogger("pyfi.scheduler")

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
    """Claim ``instant`` of the socket, then publish its call; False if already claimed.

    Raises whatever the publish raises (the claim is then released).
    """
    call_id = fire_id(planned.socket_id, instant)
    fire = uuid.UUID(call_id)
    args, kwargs = planned.arguments()
    try:
        with database.transaction() as session:
            session.add(
                models.ScheduleFire(
                    id=fire, socket_id=planned.socket_id, instant=instant, agent=agent
                )
            )
            session.flush()  # the claim: refused here if another scheduler holds it
    except IntegrityError:
        return False
    try:
        publish(planned.name, args, kwargs, call_id)
    except Exception:
        _release(database, fire)
        raise
    try:
        with database.transaction() as session:
            session.execute(
                update(models.ScheduleFire)
                .where(models.ScheduleFire.id == fire)
                .values(fired=utcnow())
            )
            # Pruned here, after the publish, to keep the claim one statement.
            session.execute(
                delete(models.ScheduleFire).where(
                    models.ScheduleFire.socket_id == planned.socket_id,
                    models.ScheduleFire.instant < instant - KEEP_FIRES,
                )
            )
    except Exception as exc:  # the call went out; only its publish time is not recorded
        log.warning(
            "fired %s for %s but could not record when: %s", planned.name, instant, first_line(exc)
        )
    return True


def _release(database: Database, fire: uuid.UUID) -> None:
    """Give an unpublished claim back, so that the instant is due again."""
    try:
        with database.transaction() as session:
            session.execute(delete(models.ScheduleFire).where(models.ScheduleFire.id == fire))
    except Exception as exc:  # the database is away too: the instant stays claimed, unfired
        log.warning("could not release the claim of fire %s: %s", fire, first_line(exc))


def last_instants() -> Subquery:
    """Each socket's last claimed instant (``socket_id``, ``instant``), to join on."""
    return (
        select(
            models.ScheduleFire.socket_id,
            func.max(models.ScheduleFire.instant).label("instant"),
        )
        .group_by(models.ScheduleFire.socket_id)
        .subquery()
    )
