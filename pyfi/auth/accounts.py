"""Changes to a user's account that touch their logins: passwords, enabling, disabling.

Each one ends the logins it makes stale, in the same transaction: a new
password ends the user's other logins (someone who knew the old one may hold
one), and disabling a user ends all of theirs at once.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from pyfi.auth import throttle, tokens
from pyfi.auth.actor import Actor
from pyfi.auth.guard import Target, require
from pyfi.db import models
from pyfi.db.enums import Right
from pyfi.errors import InvalidValue
from pyfi.objects.lookup import get_by_name
from pyfi.passwords import hash_password, is_usable, verify_password


def is_self(actor: Actor, user: models.User) -> bool:
    """True if ``actor`` is ``user`` (by id when the actor knows it, else by name)."""
    if actor.user_id is not None:
        return actor.user_id == user.id
    return actor.name == user.name


def has_password(user: models.User) -> bool:
    """False for a user who cannot log in with a password (the embedded OS user)."""
    return is_usable(user.password_hash)


def change_password(
    session: Session,
    actor: Actor,
    name: str,
    new_password: str,
    *,
    old_password: str | None = None,
    keep_token: str | None = None,
) -> int:
    """Set ``name``'s password; returns how many of their logins were ended.

    Your own password needs the current one (unless you have none yet and
    are an administrator); another user's needs you to be an administrator.
    Every login of the user ends, but the one holding ``keep_token`` (yours,
    when you change your own), and any lock-out of the name is lifted.

    Raises
    ------
    Forbidden
        Someone else's password, and you are no administrator.
    InvalidValue
        The current password is missing or wrong; the new one is too short.
    """
    user = get_by_name(session, models.User, name)
    if is_self(actor, user) and has_password(user):
        if old_password is None:
            raise InvalidValue("give your current password to change it")
        if not verify_password(user.password_hash, old_password):
            raise InvalidValue("your current password is wrong; nothing changed")
    else:
        # Resetting a password takes over the account: only for those who hold everything.
        require(session, Right.ALL, f"reset {name}'s password", Target("user", name))
    user.password_hash = hash_password(new_password)
    throttle.clear(session, name)
    ended = tokens.revoke_all(session, user.id, keep_token=keep_token)
    session.flush()
    return ended


def set_enabled(session: Session, actor: Actor, name: str, *, enabled: bool) -> int:
    """Enable or disable ``name``; disabling ends their logins (returns how many).

    Raises
    ------
    InvalidValue
        Disabling yourself: no one would be left to enable you.
    """
    user = get_by_name(session, models.User, name)
    verb = "enable" if enabled else "disable"
    require(session, Right.UPDATE_USER, f"{verb} users", Target("user", name))
    if not enabled and is_self(actor, user):
        raise InvalidValue("you cannot disable yourself; ask another administrator")
    user.enabled = enabled
    ended = 0 if enabled else tokens.revoke_all(session, user.id)
    session.flush()
    return ended
