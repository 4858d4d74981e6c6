"""Which scheduler leads: a PostgreSQL advisory lock, or a file lock beside a SQLite file.

PostgreSQL
    The leader holds a session-level advisory lock (``pg_try_advisory_lock``)
    on a connection of its own. The lock lives exactly as long as that
    connection: when it drops (a crash, a network cut), PostgreSQL ends the
    session and the next scheduler to ask takes the lock. A leader checks its
    connection before each fire and steps down when it is gone. A path that
    dies silently is bounded on both ends: the server ends the session when
    the leader has been silent for :data:`SILENT_SESSION_S` (the leader
    speaks at least every second), and the leader's own check gives up after
    :data:`UNACKED_S` of unacknowledged data.
    The key is derived from the database's schema, so two installations in
    one database (or two test schemas) elect apart. The leader's connection
    carries ``application_name = pyfi-scheduler:<agent>``, which is how
    :func:`current_leader` names it.

SQLite
    The leader holds an exclusive ``flock`` on ``<database file>.scheduler``
    and writes its name into the file. Agents sharing the file elect among
    themselves; one agent alone always leads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from pyfi.db.direct import CONNECT_TIMEOUT_S
from pyfi.db.session import Database
from pyfi.errors import first_line

log = logging.getLogger("pyfi.scheduler")

APPLICATION_PREFIX = "pyfi-scheduler:"
# PostgreSQL ends a leader's session silent for this long (idle_session_timeout).
SILENT_SESSION_S = 5
# The leader's connection fails when data sent goes unacknowledged this long.
UNACKED_S = 10


class Leadership(Protocol):
    """One scheduler's claim to lead."""

    def hold(self) -> bool:
        """True if this scheduler leads now (it tries to take the lead if not)."""
        ...

    def release(self) -> None:
        """Give the lead up (at shutdown)."""
        ...


def leadership_for(database: Database, agent: str) -> Leadership:
    """The leader election that suits the database."""
    if database.is_sqlite:
        return FileLeadership(lock_path(database.url), agent)
    return AdvisoryLeadership(database.url, agent)


def lock_key(schema: str) -> int:
    """The advisory lock's 64-bit key for the installation in ``schema``."""
    digest = hashlib.sha256(f"pyfi-scheduler:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLeadership:
    """Lead while holding a PostgreSQL session advisory lock on a dedicated connection."""

    def __init__(self, url: str, agent: str) -> None:
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": APPLICATION_PREFIX + agent,
                # A silent network cut is noticed within seconds, not hours.
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
                "tcp_user_timeout": UNACKED_S * 1000,
            },
        )
        self._connection: Connection | None = None
        self._leading = False

    def hold(self) -> bool:
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
                with contextlib.suppress(DBAPIError):  # before PostgreSQL 14: keepalives only
                    self._connection.execute(
                        text(f"SET idle_session_timeout = '{SILENT_SESSION_S}s'")
                    )
            if self._leading:
                self._connection.execute(text("SELECT 1"))  # still ours if still connected
                return True
            key = lock_key(_schema(self._connection))
            self._leading = bool(
                self._connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
                ).scalar_one()
            )
            if self._leading:
                log.info("this scheduler leads")
            return self._leading
        except Exception as exc:  # the connection is gone, and the lock with it
            if self._leading:
                log.warning("scheduler lost the lead: %s", first_line(exc))
            self._drop()
            return False

    def _drop(self) -> None:
        self._leading = False
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()
                self._connection.close()
            self._connection = None

    def release(self) -> None:
        self._drop()  # closing the session releases the lock
        self._engine.dispose()


class FileLeadership:
    """Lead while holding an exclusive ``flock`` on a file beside the SQLite database."""

    def __init__(self, path: Path | None, agent: str) -> None:
        self._path = path
        self._agent = agent
        self._fd: int | None = None

    def hold(self) -> bool:
        if self._path is None:  # an in-memory database: one process, one scheduler
            return True
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._agent.encode(), 0)
        self._fd = fd
        log.info("this scheduler leads")
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def lock_path(url: str) -> Path | None:
    """The lock file of a SQLite database; None for an in-memory one."""
    name = make_url(url).database
    if not name or name == ":memory:":
        return None
    return Path(name).with_name(Path(name).name + ".scheduler")


def current_leader(database: Database) -> str | None:
    """The name of the agent whose scheduler leads now, or None."""
    if database.is_sqlite:
        return _file_leader(lock_path(database.url))
    with database.connect() as connection:
        key = lock_key(_schema(connection))
        name = connection.execute(
            text(
                "SELECT a.application_name FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                " AND l.database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
                " AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid)"
            ),
            {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
        ).scalar()
    if name is None:
        return None
    text_name = str(name)
    return text_name.removeprefix(APPLICATION_PREFIX) or "?"


def _file_leader(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: someone leads
            return os.pread(fd, 200, 0).decode(errors="replace") or "?"
        return None
    finally:
        os.close(fd)


def _schema(connection: Any) -> str:
    return str(connection.execute(text("SELECT current_schema()")).scalar_one())
