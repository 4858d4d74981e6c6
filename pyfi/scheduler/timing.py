"""When a schedule fires: the instants of an interval or a cron expression, in UTC.

An interval of N seconds fires at the multiples of N seconds since the Unix
epoch, so every scheduler computes the same instants without sharing any
state. A cron expression is read in its time zone by ``cronsim``, which
handles daylight-saving changes as cron does: a time skipped by the
spring-forward change fires at the first minute after it, and a time that
occurs twice on the fall-back day fires once (at its first occurrence),
while expressions with a wildcard hour fire in both repeated hours.
Instants are always returned in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

from cronsim import CronSim

from pyfi.errors import InvalidValue
from pyfi.objects.validate import check_cron, check_timezone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True)
class Schedule:
    """An interval in seconds, or a 5-field cron expression read in a time zone."""

    interval: int | None = None
    cron: str | None = None
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        if (self.interval is None) == (self.cron is None):
            raise InvalidValue("a schedule is an interval or a cron expression, exactly one")
        if self.interval is not None and self.interval < 1:
            raise InvalidValue(f"interval must be at least 1 second, not {self.interval}")
        if self.cron is not None:
            check_cron(self.cron)
        zone(self.timezone)

    def describe(self) -> str:
        """The schedule as `flow scheduler ls` shows it."""
        if self.interval is not None:
            return f"every {self.interval}s"
        return f"cron {self.cron} ({self.timezone})"

    def next_after(self, moment: datetime) -> datetime:
        """The first instant strictly after ``moment``."""
        return next(self._forward(moment))

    def latest(self, after: datetime, until: datetime, count: int) -> list[datetime]:
        """At most ``count`` instants in (``after``, ``until``], the latest ones, oldest first."""
        found: list[datetime] = []
        for instant in islice(self._backward(until), count):
            if instant <= after:
                break
            found.append(instant)
        found.reverse()
        return found

    # -- iteration ------------------------------------------------------
    def _forward(self, moment: datetime) -> Iterator[datetime]:
        if self.interval is not None:
            step = self.interval
            n = int((moment - EPOCH).total_seconds() // step) + 1
            while True:
                yield EPOCH + timedelta(seconds=n * step)
                n += 1
        assert self.cron is not None
        local = moment.astimezone(zone(self.timezone))
        for instant in CronSim(self.cron, local):
            yield instant.astimezone(UTC)

    def _backward(self, moment: datetime) -> Iterator[datetime]:
        """Instants at or before ``moment``, latest first."""
        if self.interval is not None:
            step = self.interval
            n = int((moment - EPOCH).total_seconds() // step)
            while True:
                yield EPOCH + timedelta(seconds=n * step)
                n -= 1
        assert self.cron is not None
        # cronsim's reverse iteration starts strictly before its start: start a
        # minute after the moment's minute and drop what lies past the moment.
        start = moment.astimezone(zone(self.timezone)).replace(second=0, microsecond=0)
        for instant in CronSim(self.cron, start + timedelta(minutes=1), reverse=True):
            in_utc = instant.astimezone(UTC)
            if in_utc <= moment:
                yield in_utc


def zone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name``, or :class:`InvalidValue`."""
    return ZoneInfo(check_timezone(name))
