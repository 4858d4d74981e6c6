"""Tell agents the moment the meta-model changes, instead of letting them poll.

Announcing
    Every flush of a session that creates, changes or deletes a watched object
    (processors, sockets, plugs, queues, deployments, tasks, arguments) calls
    :func:`announce` from a ``before_flush`` listener registered on *every*
    SQLAlchemy session, so the CLI, the Python API and the agents' own writes
    announce themselves without any caller remembering to. Announcements live
    and die with the transaction that made the change:

    - PostgreSQL: ``SELECT pg_notify('pyfi_changes', payload)`` in the same
      transaction. NOTIFY is transactional, so listeners hear it at COMMIT and
      never hear a rolled-back change. The payload is compact JSON,
      ``{"kind","name","action","at","by","schema"}`` (well under the 8000
      byte limit: names are 120 characters at most); ``schema`` is the
      announcer's ``current_schema()``, because channels are shared by the
      whole database and two installations (or two test schemas) in one
      database must not hear each other.
    - SQLite: there is no NOTIFY, so the transaction increments the integer in
      the ``settings`` row ``changes.version`` (no new table, no migration).
      Listeners poll that one row; they learn *that* something changed, not
      what, and re-read. PostgreSQL does not bump the row: a hot row locked
      until COMMIT would serialise every writer.

    Within one transaction each (kind, name, action) is announced once, and
    an "updated" after a "created" of the same object is dropped. Every
    announcement names its origin (``host:pid`` of the writing process; on
    SQLite in the ``changes.origin`` row), so that an agent can ignore the
    echo of its own status writes instead of waking itself up in a loop.

Listening
    :class:`ChangeListener` waits for announcements: a dedicated autocommit
    psycopg connection in ``LISTEN`` on PostgreSQL (woken by the socket, so it
    returns within milliseconds of a COMMIT), a slow poll of the version row
    on SQLite. If the PostgreSQL connection drops, notifications sent while it
    was down are lost, so after reconnecting it reports one synthetic
    ``resync`` change telling the caller to re-read everything.

Create the listener *before* reading the state it guards; a change committed
between the read and the first :meth:`ChangeListener.wait` is then still heard.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import Integer, Text, cast, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, attributes

from pyfi.config import mask_url
from pyfi.db import models
from pyfi.db.direct import connect_direct, conninfo_from_url
from pyfi.db.types import utcnow
from pyfi.errors import ConfigurationError, DatabaseUnavailable, first_line

log = logging.getLogger(__name__)

CHANNEL = "pyfi_changes"
# The settings row whose integer value every SQLite transaction with changes
# bumps, and the row naming the process that bumped it last.
VERSION_SETTING = "changes.version"
ORIGIN_SETTING = "changes.origin"

CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"
# Synthetic actions: "something changed, re-read everything".
CHANGED = "changed"  # the SQLite poll saw the version move
RESYNC = "resync"  # the PostgreSQL connection was lost and is back
# The kind and name of a synthetic change, and the name of an over-long one.
EVERYTHING = "*"

# PostgreSQL refuses payloads of 8000 bytes or more; leave room for the schema.
_MAX_PAYLOAD_BYTES = 7600
_APPLICATION_NAME = "pyfi-changes"
_MIN_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 5.0
_ANNOUNCED = "pyfi.changes.announced"

# Which objects agents react to. Agents, nodes and workers are left out on
# purpose: their heartbeats would wake every agent every few seconds.
WATCHED_KINDS: dict[type[Any], str] = {
    models.Processor: "processor",
    models.Socket: "socket",
    models.Plug: "plug",
    models.Queue: "queue",
    models.Deployment: "deployment",
    models.Task: "task",
    models.Argument: "argument",
}

_NOTIFY = text(
    "SELECT pg_notify(:channel, :head || "
    "coalesce(CAST(to_json(current_schema()) AS text), 'null') || '}')"
)


@dataclass(frozen=True)
class Change:
    """One announced change: ``kind`` and ``name`` of the object, what happened, when.

    ``at`` is the announcer's wall clock (seconds since the epoch) and
    ``origin`` its :func:`origin` ("" when unknown). A synthetic change
    (:attr:`everything`) has ``kind`` and ``name`` ``"*"``; a name of ``"*"``
    alone means "some objects of this kind".
    """

    kind: str
    name: str
    action: str
    at: float
    origin: str = ""

    @property
    def everything(self) -> bool:
        """True when the caller cannot know what changed and must re-read it all."""
        return self.kind == EVERYTHING


def origin() -> str:
    """This process, as announcements name it: ``hostname:pid``."""
    return f"{_hostname()}:{os.getpid()}"


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def announce(session: Session, kind: str, name: str, action: str) -> None:
    """Announce a change, to be delivered only if the session's transaction commits.

    The object hooks call this for every watched object; call it yourself
    only for changes made with plain SQL.

    Parameters
    ----------
    session:
        The session whose transaction made the change.
    kind, name:
        What changed, e.g. ``"processor"``, ``"proc1"``.
    action:
        :data:`CREATED`, :data:`UPDATED` or :data:`DELETED`.
    """
    announced: set[tuple[str, str, str]] = session.info.setdefault(_ANNOUNCED, set())
    key = (kind, name, action)
    if key in announced or (action == UPDATED and (kind, name, CREATED) in announced):
        return
    first = not announced
    announced.add(key)
    # The session's own connection, so the announcement shares its transaction.
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        _notify(connection, kind, name, action)
    elif dialect == "sqlite" and first:
        _bump_version(connection, session.info.get("owner"))
    # Other databases have neither NOTIFY nor a listener here: nothing to do.


def _notify(connection: Connection, kind: str, name: str, action: str) -> None:
    head = _payload_head(kind, name, action, time.time())
    if len(head.encode()) > _MAX_PAYLOAD_BYTES:
        # Only a caller of announce() can get here (names are 120 characters
        # at most); "*" still tells listeners which kind to re-read.
        head = _payload_head(kind[:100], EVERYTHING, action[:40], time.time())
    connection.execute(_NOTIFY, {"channel": CHANNEL, "head": head})


def _payload_head(kind: str, name: str, action: str, at: float) -> str:
    """The payload up to the schema, which the database fills in."""
    body = json.dumps(
        {"kind": kind, "name": name, "action": action, "at": round(at, 3), "by": origin()},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return body[:-1] + ',"schema":'


def _bump_version(connection: Connection, owner: str | None) -> None:
    setting = models.Setting
    bump = cast(cast(setting.value, Integer) + 1, Text)
    for name, value, on_conflict in (
        (VERSION_SETTING, "1", bump),
        (ORIGIN_SETTING, origin(), origin()),
    ):
        statement = (
            sqlite_insert(setting)
            .values(name=name, value=value, owner=owner)
            .on_conflict_do_update(
                index_elements=[setting.name], set_={"value": on_conflict, "updated": utcnow()}
            )
        )
        connection.execute(statement)


def read_version(connection: Connection) -> tuple[int, str]:
    """The SQLite change counter (0 before the first change) and who bumped it last."""
    result = connection.execute(
        select(models.Setting.name, models.Setting.value).where(
            models.Setting.name.in_([VERSION_SETTING, ORIGIN_SETTING])
        )
    )
    rows = {name: value for name, value in result}
    version = rows.get(VERSION_SETTING, "")
    return (int(version) if version.strip().isdigit() else 0), rows.get(ORIGIN_SETTING, "")


@sa_event.listens_for(Session, "before_flush")
def _announce_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Announce every watched object this flush inserts, updates or deletes.

    Before the flush rather than after it, so that names of deleted objects
    can still be read; a flush that then fails aborts the transaction, and
    its announcements with it.
    """
    for obj in session.new:
        kind = WATCHED_KINDS.get(type(obj))
        if kind is not None and obj.name is not None:
            announce(session, kind, obj.name, CREATED)
    for obj in session.dirty:
        kind = WATCHED_KINDS.get(type(obj))
        if kind is None or not session.is_modified(obj, include_collections=False):
            continue
        old_names = attributes.get_history(obj, "name").deleted
        if old_names and old_names[0] is not None and old_names[0] != obj.name:
            # To anyone keeping state by name, a rename is a delete and a create.
            announce(session, kind, old_names[0], DELETED)
            announce(session, kind, obj.name, CREATED)
        else:
            announce(session, kind, obj.name, UPDATED)
    for obj in session.deleted:
        kind = WATCHED_KINDS.get(type(obj))
        if kind is not None:
            announce(session, kind, obj.name, DELETED)


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_announced(session: Session, *_args: Any) -> None:
    """Start each transaction with nothing announced.

    Also after a rollback to a savepoint: what was announced inside it was
    discarded with it, so announcing again is needed (and at worst repeats).
    """
    session.info.pop(_ANNOUNCED, None)


class _Backend(Protocol):
    def wait(self, timeout_s: float) -> list[Change]: ...

    def close(self) -> None: ...


class ChangeListener:
    """Waits for changes of the meta-model: LISTEN on PostgreSQL, a poll on SQLite.

    Use one listener per thread. Typical use::

        with ChangeListener(settings.database_url) as changes:
            state = read_everything()
            while True:
                for change in changes.wait(30):
                    ...  # re-read change.kind/change.name, or everything

    Parameters
    ----------
    database_url:
        The meta-model's SQLAlchemy URL.
    poll_interval_s:
        SQLite only: how often to look at the version row.
    ignore_own:
        Drop changes committed by this very process (see :func:`origin`): an
        agent that reacts to changes must not be woken by its own status
        writes. On SQLite a poll that saw only its own commit is dropped;
        one that saw others' commits too is reported.

    Raises
    ------
    DatabaseUnavailable
        The database cannot be reached when the listener starts.
    ConfigurationError
        The URL is neither PostgreSQL nor SQLite.
    """

    def __init__(
        self, database_url: str, *, poll_interval_s: float = 5.0, ignore_own: bool = False
    ) -> None:
        self.database_url = database_url
        backend = make_url(database_url).get_backend_name()
        self._backend: _Backend
        if backend == "postgresql":
            self._backend = _PostgresListener(database_url, ignore_own)
        elif backend == "sqlite":
            self._backend = _SqlitePoller(database_url, poll_interval_s, ignore_own)
        else:
            raise ConfigurationError(
                f"cannot listen for changes on {mask_url(database_url)}; "
                "use a PostgreSQL or SQLite database"
            )

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend process listening for us (None on SQLite or while down)."""
        if isinstance(self._backend, _PostgresListener):
            return self._backend.backend_pid
        return None

    def wait(self, timeout_s: float) -> list[Change]:
        """Block until changes arrive or ``timeout_s`` passes.

        Returns
        -------
        list of Change
            The changes seen, one per (kind, name, action), oldest first;
            empty on timeout. A :attr:`Change.everything` entry means "re-read
            everything".

        Raises
        ------
        DatabaseNotInitialised, DatabaseUnavailable
            SQLite only: the database file cannot be read. (PostgreSQL keeps
            reconnecting instead.)
        """
        return self._backend.wait(timeout_s)

    def close(self) -> None:
        """Stop listening and release the connection."""
        self._backend.close()

    def __enter__(self) -> ChangeListener:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()


class _PostgresListener:
    """One autocommit connection in ``LISTEN``, reconnected with backoff."""

    def __init__(self, database_url: str, ignore_own: bool) -> None:
        self._url = database_url
        self._ignore_own = ignore_own
        self._conninfo = conninfo_from_url(database_url)
        self._conn: Any = None
        self._schema: str | None = None
        self._resync = False
        self._backoff = _MIN_BACKOFF_S
        self._next_attempt = 0.0
        try:
            self._connect()
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot listen for changes on {mask_url(database_url)}: {first_line(exc)}"
            ) from exc

    @property
    def backend_pid(self) -> int | None:
        return int(self._conn.info.backend_pid) if self._conn is not None else None

    def _connect(self) -> None:
        listen = f"LISTEN {CHANNEL}"
        conn, row = connect_direct(
            self._conninfo, _APPLICATION_NAME, "SELECT current_schema()", setup=[listen]
        )
        self._schema = row[0] if row else None
        self._conn = conn

    def wait(self, timeout_s: float) -> list[Change]:
        import psycopg

        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if self._conn is None and not self._reconnect(deadline):
                return []
            if self._resync:
                self._resync = False
                return [Change(EVERYTHING, EVERYTHING, RESYNC, time.time())]
            try:
                remaining = max(0.0, deadline - time.monotonic())
                notifies = list(self._conn.notifies(timeout=remaining, stop_after=1))
                if notifies:
                    # Take whatever else already arrived, without waiting.
                    notifies += list(self._conn.notifies(timeout=0))
            except psycopg.Error as exc:
                log.warning("lost the change listener's connection: %s", first_line(exc))
                self._drop()
                continue
            changes = _dedupe(c for n in notifies if (c := self._decode(n.payload)) is not None)
            if changes:
                return changes
            if time.monotonic() >= deadline:
                return []

    def _reconnect(self, deadline: float) -> bool:
        """Try to reconnect until ``deadline`` (at least once if an attempt is due)."""
        while True:
            now = time.monotonic()
            if now < self._next_attempt:
                if now >= deadline:
                    return False
                time.sleep(min(self._next_attempt, deadline) - now)
                continue
            try:
                self._connect()
            except Exception as exc:
                # One line per outage, not one per attempt.
                first = self._backoff == _MIN_BACKOFF_S
                log.log(
                    logging.WARNING if first else logging.DEBUG,
                    "cannot reconnect the change listener (retrying with a backoff): %s",
                    first_line(exc),
                )
                self._next_attempt = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)
                continue
            log.info("change listener reconnected; asking for a resync")
            self._backoff = _MIN_BACKOFF_S
            self._resync = True
            return True

    def _decode(self, payload: str) -> Change | None:
        """The change in ``payload``, or None if it is malformed or from another schema."""
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("schema") != self._schema:
            return None
        by = data.get("by")
        by = by if isinstance(by, str) else ""
        if self._ignore_own and by == origin():
            return None
        kind, name, action, at = (data.get(k) for k in ("kind", "name", "action", "at"))
        if not (isinstance(kind, str) and isinstance(name, str) and isinstance(action, str)):
            return None
        return Change(kind, name, action, float(at) if isinstance(at, int | float) else 0.0, by)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken; closing is best effort
                log.debug("error closing a broken listener connection", exc_info=True)

    def close(self) -> None:
        self._drop()
        # A closed listener must not reconnect on a stray wait().
        self._next_attempt = float("inf")


class _SqlitePoller:
    """Compares the ``changes.version`` row every ``poll_interval_s``."""

    def __init__(self, database_url: str, poll_interval_s: float, ignore_own: bool) -> None:
        from pyfi.db.session import create_db_engine

        self._url = database_url
        self._ignore_own = ignore_own
        self._engine = create_db_engine(database_url)
        self._interval = max(0.01, poll_interval_s)
        self._version, _ = self._read()
        self._next_poll = time.monotonic() + self._interval

    def _read(self) -> tuple[int, str]:
        from pyfi.db.session import translate_errors

        with translate_errors(self._url), self._engine.connect() as conn:
            return read_version(conn)

    def wait(self, timeout_s: float) -> list[Change]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            now = time.monotonic()
            # Poll when due, and always at the deadline, so that a short wait
            # still sees a change that is already there.
            if now >= self._next_poll or now >= deadline:
                self._next_poll = now + self._interval
                version, by = self._read()
                moved, self._version = version - self._version, version
                # One bump is one transaction: if it was ours, nobody else wrote.
                only_ours = moved == 1 and by == origin()
                if moved and not (self._ignore_own and only_ours):
                    by = by if moved == 1 else ""
                    return [Change(EVERYTHING, EVERYTHING, CHANGED, time.time(), by)]
                if now >= deadline:
                    return []
            time.sleep(max(0.0, min(self._next_poll, deadline) - time.monotonic()))

    def close(self) -> None:
        self._engine.dispose()


def _dedupe(changes: Iterable[Change]) -> list[Change]:
    seen: dict[tuple[str, str, str], Change] = {}
    for change in changes:
        seen.setdefault((change.kind, change.name, change.action), change)
    return list(seen.values())
