"""A login token makes a process act as its user.

Entry points (the CLI, the Python API's default connection) find a token
(:func:`pyfi.auth.token_store.find_token`) and hand it to :func:`use_token`;
the first transaction then looks it up once — one query by a unique index —
and every later transaction of the process acts as the token's user. A token
that no longer logs anyone in (expired, revoked, its user disabled, unknown
to this database) stops the command with :class:`~pyfi.errors.NotLoggedIn`
rather than falling back to the connection's own identity: someone who logged
in expects to act as themselves, not as whoever the connection happens to be.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from pyfi.auth import tokens
from pyfi.auth.actor import Actor, ActorKind
from pyfi.auth.token_store import FoundToken
from pyfi.config import ENV_TOKEN
from pyfi.db.session import Database, translate_errors
from pyfi.errors import NotLoggedIn


def use_token(database: Database, found: FoundToken) -> None:
    """Make ``database``'s transactions act as the user ``found`` logs in (checked lazily)."""
    database.act_as_resolved(_resolver(found))


def token_actor(database: Database, found: FoundToken) -> Actor:
    """The actor ``found`` logs in to ``database``.

    Raises
    ------
    NotLoggedIn
        The token is expired, revoked, unknown, or its user is disabled.
    """
    with translate_errors(database.url), Session(database.engine) as session, session.begin():
        who = tokens.logged_in(session, found.token)
    if who is None:
        instead = f", or give {ENV_TOKEN} a valid token" if found.source == ENV_TOKEN else ""
        raise NotLoggedIn(f"your login has expired or was revoked; run `flow login`{instead}")
    return Actor(who.user_name, ActorKind.USER, who.user_id, via="token")


def _resolver(found: FoundToken) -> Callable[[Database], Actor]:
    def resolve(database: Database) -> Actor:
        return token_actor(database, found)

    return resolve
