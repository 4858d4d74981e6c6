"""The scheduler's loop: while leading, fire what is due, then sleep until the next instant.

Each round reads the scheduled sockets afresh (one query), so a socket added,
changed, paused or resumed is seen within :data:`RELOAD_S`. Between rounds
the loop sleeps until just before the earliest next instant (or the reload),
not on a fixed tick; the round then reads the sockets ahead of the instant
(:data:`PREPARE_S`) and fires on the instant itself, so a fire's lateness is
its claim and its publish, not the read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import or_, select

from pyfi.db import models
from pyfi.db.session import Database
from pyfi.errors import FlowError, first_line
from pyfi.scheduler.fires import Planned, Publish, claim_and_publish, last_instants
from pyfi.scheduler.leader import Leadership
from pyfi.scheduler.timing import DEFAULT_TIMEZONE, Schedule

log = logging.getLogger("pyfi.scheduler")

# The longest a leader sleeps before it reads the sockets again.
RELOAD_S = 1.0
# How long before an instant a round reads the sockets, then waits to fire.
PREPARE_S = 0.2
# How often a follower asks for the lead.
ELECT_S = 0.5
# How long the loop waits after a failed round (the database or broker away).
RETRY_S = 1.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The time now, in UTC."""
    return datetime.now(UTC)


def load_planned(database: Database) -> list[Planned]:
    """Every enabled, unpaused socket with a schedule, with its last fired instant."""
    last = last_instants()
    socket = models.Socket
    query = (
        select(socket, last.c.instant)
        .join(models.Processor, models.Processor.id == socket.processor_id)
        .outerjoin(last, last.c.socket_id == socket.id)
        .where(
            or_(socket.interval.is_not(None), socket.cron.is_not(None)),
            socket.enabled,
            socket.paused.is_(False),
            models.Processor.enabled,
        )
    )
    planned: list[Planned] = []
    with database.transaction() as session:
        for row, last_instant in session.execute(query):
            try:
                schedule = Schedule(row.interval, row.cron, row.timezone or DEFAULT_TIMEZONE)
            except FlowError as exc:  # written by hand past the checks: say so, skip it
                log.warning("socket %s has an unusable schedule: %s", row.name, exc)
                continue
            fired = _aware(last_instant)
            anchor = row.updated if fired is None else max(fired, row.updated)
            planned.append(
                Planned(row.id, row.name, schedule, row.misfire, row.catch_up, row.input, anchor)
            )
    return planned


def _aware(moment: datetime | None) -> datetime | None:
    # An aggregate's value skips the column type: SQLite hands back text or naive time.
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Scheduler:
    """Fires the due instants of every scheduled socket, while its leadership holds."""

    def __init__(
        self,
        database: Database,
        publish: Publish,
        leadership: Leadership,
        agent: str,
        clock: Clock = utc_now,
    ) -> None:
        self.database = database
        self.publish = publish
        self.leadership = leadership
        self.agent = agent
        self.clock = clock

    def round(self, stop: threading.Event | None = None) -> datetime | None:
        """Fire whatever is due now; returns the earliest next instant (None: no schedule).

        With ``stop`` (the loop's), an instant due within :data:`PREPARE_S`
        is waited for and fired on time. Stops early, firing nothing more, if
        the lead is lost meanwhile.
        """
        planned = load_planned(self.database)
        now = self.clock()
        if stop is not None and planned:
            soonest = min(socket.schedule.next_after(now) for socket in planned)
            ahead = (soonest - now).total_seconds()
            if ahead <= PREPARE_S:
                if stop.wait(ahead):
                    return None
                now = self.clock()
        for socket in planned:
            for instant in socket.due(now):
                if not self.leadership.hold():
                    return None
                if claim_and_publish(self.database, socket, instant, self.publish, self.agent):
                    log.debug("fired %s for %s", socket.name, instant.isoformat())
        return min((socket.schedule.next_after(now) for socket in planned), default=None)

    def run(self, stop: threading.Event) -> None:
        """Elect, fire, sleep; until ``stop`` is set. Never raises."""
        while not stop.is_set():
            if not self.leadership.hold():
                stop.wait(ELECT_S)
                continue
            try:
                upcoming = self.round(stop)
            except Exception as exc:  # the database or broker is away: try again soon
                log.warning("scheduler round failed: %s", first_line(exc))
                stop.wait(RETRY_S)
                continue
            delay = RELOAD_S
            if upcoming is not None:
                ahead = (upcoming - self.clock()).total_seconds()
                delay = min(RELOAD_S, max(0.0, ahead - PREPARE_S))
            stop.wait(delay)
