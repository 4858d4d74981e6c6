"""What `flow scheduler` shows and changes: each schedule, its next and last fire; pause, resume."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.errors import FlowError, InvalidValue
from pyfi.objects import get_by_name
from pyfi.scheduler.fires import last_instants
from pyfi.scheduler.timing import DEFAULT_TIMEZONE, Schedule


def list_schedules(session: Session, now: datetime) -> list[dict[str, Any]]:
    """One row per socket with a schedule, by name: schedule, policy, next and last fire.

    ``next`` is the next instant after ``now``, empty for a paused or
    disabled schedule; ``last`` is the last instant fired and ``fired`` when
    it was published.
    """
    last = last_instants()
    socket = models.Socket
    query = (
        select(socket, models.ScheduleFire)
        .outerjoin(last, last.c.socket_id == socket.id)
        .outerjoin(
            models.ScheduleFire,
            (models.ScheduleFire.socket_id == socket.id)
            & (models.ScheduleFire.instant == last.c.instant),
        )
        .where(or_(socket.interval.is_not(None), socket.cron.is_not(None)))
        .order_by(socket.name)
    )
    rows: list[dict[str, Any]] = []
    for row, fire in session.execute(query):
        timezone = row.timezone or DEFAULT_TIMEZONE
        try:
            schedule: Schedule | None = Schedule(row.interval, row.cron, timezone)
        except FlowError:
            schedule = None
        active = schedule is not None and row.enabled and not row.paused
        rows.append(
            {
                "socket": row.name,
                "schedule": schedule.describe() if schedule else f"unusable: {row.cron}",
                "misfire": (
                    f"catch-up {row.catch_up}" if row.misfire.value == "catch-up" else "skip"
                ),
                "next": schedule.next_after(now) if active and schedule else None,
                "last": fire.instant if fire else None,
                "fired": fire.fired if fire else None,
                "paused": row.paused,
                "enabled": row.enabled,
            }
        )
    return rows


def set_paused(session: Session, name: str, paused: bool) -> models.Socket:
    """Pause or resume the schedule of socket ``name``.

    Resuming starts the schedule afresh: instants that passed while it was
    paused are not fired, whatever the misfire policy.

    Raises
    ------
    ObjectNotFound
        No socket is called ``name``.
    InvalidValue
        The socket has no schedule.
    """
    socket = get_by_name(session, models.Socket, name)
    if socket.interval is None and socket.cron is None:
        raise InvalidValue(
            f"socket {name} has no schedule; give it one with "
            f"`flow update socket -n {name} --interval N` or `--cron EXPR`"
        )
    socket.paused = paused
    return socket
