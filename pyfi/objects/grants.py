"""Granting rights to users and roles, and taking them back."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.db.enums import Right
from pyfi.errors import InvalidValue
from pyfi.objects.lookup import get_by_name
from pyfi.objects.validate import coerce_enum


def privilege_for(session: Session, right: Right) -> models.Privilege:
    """The privilege row of ``right``, created on first use."""
    found = session.scalars(
        select(models.Privilege).where(models.Privilege.name == right)
    ).one_or_none()
    if found is None:
        found = models.Privilege(name=right)
        session.add(found)
    return found


def _holders(
    session: Session, user: str | None, role: str | None
) -> list[models.User | models.Role]:
    if not user and not role:
        raise InvalidValue("say who gets the right: give --user NAME, --role NAME, or both")
    holders: list[models.User | models.Role] = []
    if user:
        holders.append(get_by_name(session, models.User, user))
    if role:
        holders.append(get_by_name(session, models.Role, role))
    return holders


def grant(
    session: Session, right: str, *, user: str | None = None, role: str | None = None
) -> Right:
    """Grant ``right`` to a user and/or a role; granting twice changes nothing."""
    return _change(session, right, user, role, give=True)


def revoke(
    session: Session, right: str, *, user: str | None = None, role: str | None = None
) -> Right:
    """Take ``right`` back from a user and/or a role."""
    return _change(session, right, user, role, give=False)


def _change(
    session: Session, right: str, user: str | None, role: str | None, *, give: bool
) -> Right:
    member = coerce_enum(Right, right, "right")
    privilege = privilege_for(session, member)
    for holder in _holders(session, user, role):
        held = privilege in holder.privileges
        if give and not held:
            holder.privileges.append(privilege)
        elif not give:
            if not held:
                raise InvalidValue(f"{holder.name!r} does not hold {member.value}")
            holder.privileges.remove(privilege)
    session.flush()
    return member


def set_roles(
    session: Session, user: models.User, add: tuple[str, ...], remove: tuple[str, ...]
) -> None:
    """Give ``user`` the roles in ``add`` and take away those in ``remove``."""
    for name in add:
        role = get_by_name(session, models.Role, name)
        if role not in user.roles:
            user.roles.append(role)
    for name in remove:
        role = get_by_name(session, models.Role, name)
        if role not in user.roles:
            raise InvalidValue(f"user {user.name!r} does not have the role {name!r}")
        user.roles.remove(role)
    session.flush()
