"""How the agent lives through a service it cannot reach: one line when it goes, one when back.

An agent's workers need no database to consume, so an agent that cannot
reach the database must not stop them: it keeps supervising, tries again
with a backoff, and catches up once the database answers. Retrying every
few seconds must not write a line each time (a 30 s outage would be a page of
identical warnings), so :class:`Outage` logs the first failure of an outage
and its end, and keeps the attempts in between at debug level.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from pyfi.errors import DatabaseUnavailable, first_line

log = logging.getLogger("pyfi.agent")

MIN_RETRY_S = 0.5
MAX_RETRY_S = 5.0

# Errors that mean "the service is away", not "pyfi has a bug".
UNAVAILABLE: tuple[type[BaseException], ...] = (DatabaseUnavailable, SQLAlchemyError, OSError)


class Outage:
    """Whether ``what`` is reachable, since when not, and how long to wait before trying again."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None  # monotonic time of the first failure
        self.attempts = 0
        self._retry_s = MIN_RETRY_S

    @property
    def down(self) -> bool:
        """True between a failure and the next success."""
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failed attempt; return how long to wait before the next one."""
        self.attempts += 1
        if self.since is None:
            self.since = time.monotonic()
            expected = isinstance(exc, UNAVAILABLE)
            log.warning(
                "the %s is unreachable (%s); workers keep running, retrying until it is back",
                self.what,
                first_line(exc),
                exc_info=not expected,  # an unexpected error: its traceback, once
            )
        else:
            log.debug("still cannot use the %s: %s", self.what, first_line(exc))
        delay, self._retry_s = self._retry_s, min(self._retry_s * 2, MAX_RETRY_S)
        return delay

    def recovered(self) -> bool:
        """Note a success; True (and one line in the log) if it ends an outage."""
        if self.since is None:
            return False
        log.info(
            "the %s is back after %.1fs (%d attempts); catching up",
            self.what,
            time.monotonic() - self.since,
            self.attempts,
        )
        self.since, self.attempts, self._retry_s = None, 0, MIN_RETRY_S
        return True
