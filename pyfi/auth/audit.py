"""Reading the audit log: the lines :mod:`pyfi.auth.guard` wrote, newest last."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfi.auth.guard import AUDIT_SOURCE
from pyfi.db.models.runtime import Log
from pyfi.errors import InvalidValue

_AGO = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

# At most this many lines per listing: the log only grows.
MAX_LINES = 1000


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """A point in time from ``2026-12-07T10:00`` (UTC unless it says) or ``30m``, ``2h``, ``7d``."""
    found = _AGO.match(value.strip())
    if found:
        amount, unit = int(found.group(1)), found.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidValue(
            f"--since {value!r} is neither a time (2026-12-07T10:00) nor an age (30m, 2h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit_lines(
    session: Session, *, user: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The newest :data:`MAX_LINES` audit lines, oldest first, filtered by user and time."""
    query = select(Log).where(Log.source == AUDIT_SOURCE)
    if user:
        query = query.where(Log.owner == user)
    if since is not None:
        query = query.where(Log.created >= since)
    rows = session.scalars(query.order_by(Log.created.desc()).limit(MAX_LINES)).all()
    return [
        {
            "created": row.created,
            "user": row.owner,
            "outcome": row.text.split(" ", 1)[0],
            "text": row.text,
            "object_kind": row.object_kind,
        }
        for row in reversed(rows)
    ]
