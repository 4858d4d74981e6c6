"""The first administrator of a new database.

``flow db init`` makes the role :data:`ADMINISTRATORS` (holding ``ALL``) on
every new database, and then:

* on PostgreSQL, the administrator it was given (asked for, or from the
  environment in scripts) — there is no default password, so when none is
  given there is no administrator until the database's owner makes one;
* on the embedded SQLite database, a user named after the operating-system
  user, without a password: one user, one machine. Whoever can write the
  database file can change every row anyway, so a password would protect
  nothing; the row exists so that ownership and audit name somebody.

An administrator holds ``ALL`` both directly and through the role, so that
taking the role away from one administrator does not silently leave the
database with none.
"""

from __future__ import annotations

import uuid

from sqlalchemy import CompoundSelect, select
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.db.enums import Right
from pyfi.objects.grants import privilege_for
from pyfi.objects.lookup import ensure_name_free
from pyfi.objects.validate import check_name

ADMINISTRATORS = "administrators"
# What password_hash holds for a user who cannot log in with a password: it
# is no argon2 hash, so no password ever matches it.
NO_PASSWORD = "!"


def administrators_role(session: Session) -> models.Role:
    """The role holding ``ALL``, made on first use."""
    role = session.scalars(
        select(models.Role).where(models.Role.name == ADMINISTRATORS)
    ).one_or_none()
    if role is None:
        role = models.Role(name=ADMINISTRATORS)
        session.add(role)
    everything = privilege_for(session, Right.ALL)
    if everything not in role.privileges:
        role.privileges.append(everything)
    session.flush()
    return role


def create_administrator(
    session: Session, name: str, password_hash: str, email: str | None = None
) -> models.User:
    """A new user holding ``ALL``, directly and through the administrators role.

    ``password_hash`` is already hashed (:func:`pyfi.passwords.hash_password`),
    or :data:`NO_PASSWORD`.

    Raises
    ------
    InvalidValue
        The name is not a valid object name.
    DuplicateObject
        A user already has that name.
    """
    name = check_name(name, "user")
    ensure_name_free(session, models.User, name)
    role = administrators_role(session)
    user = models.User(
        name=name,
        email=email or f"{name}@localhost",
        password_hash=password_hash,
        enabled=True,
    )
    user.roles.append(role)
    user.privileges.append(privilege_for(session, Right.ALL))
    session.add(user)
    session.flush()
    return user


def _holders_of_all() -> CompoundSelect[uuid.UUID]:
    """The ids of users holding ``ALL``, directly or through a role."""
    everything = select(models.Privilege.id).where(models.Privilege.name == Right.ALL)
    direct = select(models.user_privileges.c.user_id).where(
        models.user_privileges.c.privilege_id.in_(everything)
    )
    by_role = select(models.user_roles.c.user_id).where(
        models.user_roles.c.role_id.in_(
            select(models.role_privileges.c.role_id).where(
                models.role_privileges.c.privilege_id.in_(everything)
            )
        )
    )
    return direct.union(by_role)


def administrator_exists(session: Session) -> bool:
    """True if some enabled user holds ``ALL``, directly or through a role."""
    found = session.scalar(
        select(models.User.id)
        .where(models.User.enabled.is_(True), models.User.id.in_(_holders_of_all()))
        .limit(1)
    )
    return found is not None
