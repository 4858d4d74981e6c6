"""Engines and transactions, for PostgreSQL and the embedded SQLite alike.

Callers open a transaction with ``with database.transaction() as session:``;
models never open sessions. Driver errors that mean "the database is not
there" or "the tables are not there" are turned into :mod:`pyfi.errors` here,
where they enter our code, so that every caller reports them the same way.
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from pyfi.auth.actor import ACTOR_KEY, Actor, ActorKind, connection_actor, process_actor
from pyfi.auth.guard import REFUSALS_KEY, write_refusals
from pyfi.config import mask_url
from pyfi.db.base import Audited
from pyfi.db.direct import CONNECT_TIMEOUT_S
from pyfi.db.models.runtime import Event, Log
from pyfi.errors import DatabaseNotInitialised, DatabaseUnavailable, first_line

# How long an embedded writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 15_000

_log = logging.getLogger(__name__)

_MISSING_TABLE = re.compile(r"no such table|relation \S+ does not exist|UndefinedTable", re.I)


class Database:
    """One database: its engine, its session factory and the user it connects as."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_db_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._user: str | None = None
        self._actor: Actor | None = None
        self._resolve_actor: Callable[[Database], Actor] | None = None

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded database."""
        return self.engine.dialect.name == "sqlite"

    def current_user(self) -> str:
        """The database login: ``current_user`` on PostgreSQL, the OS user on SQLite."""
        if self._user is None:
            if self.is_sqlite:
                self._user = getpass.getuser()
            else:
                with self.connect() as conn:
                    self._user = str(conn.execute(text("SELECT current_user")).scalar_one())
        return self._user

    @property
    def actor(self) -> Actor:
        """Who this database's transactions act as (see :mod:`pyfi.auth.actor`)."""
        if self._actor is None:
            service = process_actor()
            if service is not None:
                return service
            if self._resolve_actor is not None:
                self._actor = self._resolve_actor(self)
            else:
                with self.connect() as conn:
                    self._actor = connection_actor(conn)
        return self._actor

    def act_as(self, actor: Actor) -> None:
        """Make later transactions act as ``actor`` (a login, or a service)."""
        self._actor = actor

    def act_as_resolved(self, resolve: Callable[[Database], Actor]) -> None:
        """Make later transactions act as whom ``resolve`` names, asked on first need.

        For a login token: the lookup costs a query, and commands that never
        open a transaction (or that log in afresh) should not pay for it or
        fail on a stale token. ``resolve`` may raise (an expired login); it is
        then asked again by the next transaction.
        """
        self._actor = None
        self._resolve_actor = resolve

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A raw connection, with connection failures translated."""
        with translate_errors(self.url), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        actor = self.actor
        # Rows a user creates are theirs; the administrator's and services'
        # rows record the database login, as before there were users.
        owner = actor.name if actor.kind is ActorKind.USER else self.current_user()
        with translate_errors(self.url):
            session = self._sessions()
            session.info["owner"] = owner
            session.info[ACTOR_KEY] = actor
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                refusals = session.info.pop(REFUSALS_KEY, None)
                session.close()
                if refusals:
                    self._keep_refusals(refusals)

    def _keep_refusals(self, refusals: list[dict[str, Any]]) -> None:
        """Write refused checks to the audit log after their action rolled back."""
        try:
            with self._sessions() as session, session.begin():
                write_refusals(session, refusals)
        except Exception:  # the refusal itself must still reach the user
            _log.warning("could not write %d refusal(s) to the audit log", len(refusals))

    def dispose(self) -> None:
        """Close every pooled connection (before a fork, or at exit)."""
        self.engine.dispose()


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine with the settings pyfi relies on for each backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores foreign keys (and so every ON DELETE rule) unless asked;
    # WAL lets readers and the workers' writer proceed side by side.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


@event.listens_for(Session, "before_flush")
def _fill_owner(session: Session, _context: Any, _instances: Any) -> None:
    """Stamp new rows with the database user of the session that creates them."""
    owner = session.info.get("owner")
    if owner is None:
        return
    for obj in session.new:
        if isinstance(obj, Audited | Event | Log) and obj.owner is None:
            obj.owner = owner


def not_initialised(url: str) -> DatabaseNotInitialised:
    """The error for a database without pyfi's tables, whichever driver found out."""
    return DatabaseNotInitialised(
        f"the database {mask_url(url)} has no pyfi tables; run `flow db init` first"
    )


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn "cannot connect" and "no such table" driver errors into pyfi errors."""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        detail = first_line(exc)
        if _MISSING_TABLE.search(detail):
            raise not_initialised(url) from exc
        if isinstance(exc, OperationalError):
            # Refused or timed-out connections, unreadable SQLite files, locks
            # held past the busy timeout: all mean "the database is not usable".
            raise DatabaseUnavailable(
                f"cannot use the database {mask_url(url)}: {detail}; start it, or point "
                "--db/PYFI_DB at a reachable one"
            ) from exc
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(
                f"lost the connection to the database {mask_url(url)}: {first_line(exc)}"
            ) from exc
        raise


from pyfi.db import changes as _changes  # noqa: E402, F401  (registers the change announcer)
