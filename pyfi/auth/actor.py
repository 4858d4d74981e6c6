"""The acting identity of a database session.

Every :meth:`pyfi.db.session.Database.transaction` carries an :class:`Actor`
in ``session.info[ACTOR_KEY]``; the rights chokepoint reads it there, in the
same transaction as the action it checks.

Where the actor comes from (:func:`connection_actor`, before any login):

* the embedded SQLite database: one machine, one user — the operating-system
  user is the administrator (whoever can write the database file can change
  every row of it anyway);
* PostgreSQL, connected as a superuser or as the database's owner: the
  administrator, for the same reason — that login can rewrite every table
  directly, so refusing it in pyfi would protect nothing;
* PostgreSQL, connected as any other login: the pyfi user of that name,
  with that user's rights.

A login token (``flow login``) replaces the connection's actor with the
token's user: :meth:`Database.act_as`.
"""

from __future__ import annotations

import enum
import getpass
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

# The key of ``session.info`` that holds the session's Actor.
ACTOR_KEY = "pyfi.actor"


class ActorKind(enum.StrEnum):
    """How far an actor's rights reach."""

    ADMINISTRATOR = "administrator"  # every right; no row needed
    USER = "user"  # the rights of the pyfi user of that name
    SERVICE = "service"  # an agent or a worker: the rights of its service role


@dataclass(frozen=True)
class Actor:
    """Who is acting: a pyfi user, the administrator connection, or a service.

    ``name`` is the pyfi user's name (for an administrator: the OS or database
    login); ``user_id`` is the user's row once known (``None`` for an
    administrator connection without a row, and for services).
    """

    name: str
    kind: ActorKind
    user_id: uuid.UUID | None = None
    # How the identity was established: "os-user", "database-login", "token", "service".
    via: str = "database-login"

    @property
    def is_administrator(self) -> bool:
        """True when every right is held whatever the rows say."""
        return self.kind is ActorKind.ADMINISTRATOR


# The actor every Database of this process acts as unless told otherwise:
# set once an agent or a worker has started (they then act as services).
_process_actor: list[Actor] = []


@contextmanager
def serving_as(name: str) -> Iterator[Actor]:
    """Make this process's databases act as the service ``name`` while inside.

    An agent or a worker enters it once its start was checked and stays in
    it until it ends, so its own bookkeeping transactions are never taken for
    a user's actions; on leaving, the process acts as before (a command run
    inside a longer-lived process, as in tests, leaves no service behind).
    """
    service = Actor(name, ActorKind.SERVICE, via="service")
    before = list(_process_actor)
    _process_actor[:] = [service]
    try:
        yield service
    finally:
        _process_actor[:] = before


def process_actor() -> Actor | None:
    """The service this process acts as (:func:`serving_as`), if any."""
    return _process_actor[0] if _process_actor else None


def actor_of(session: Session) -> Actor | None:
    """The actor of ``session``; ``None`` for a session pyfi did not open."""
    found = session.info.get(ACTOR_KEY)
    return found if isinstance(found, Actor) else None


def connection_actor(conn: Connection) -> Actor:
    """The actor a connection stands for before any login (see the module docstring)."""
    if conn.dialect.name == "sqlite":
        return Actor(getpass.getuser(), ActorKind.ADMINISTRATOR, via="os-user")
    row = conn.execute(
        text(
            "SELECT current_user, r.rolsuper OR pg_get_userbyid(d.datdba) = current_user "
            "FROM pg_roles r, pg_database d "
            "WHERE r.rolname = current_user AND d.datname = current_database()"
        )
    ).one()
    name, administrator = str(row[0]), bool(row[1])
    return Actor(name, ActorKind.ADMINISTRATOR if administrator else ActorKind.USER)
