"""Granting rights to users and roles, and taking them back."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfi.auth.guard import Target, forget_rights, require
from pyfi.auth.rights import effective_rights
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
    holders = _holders(session, user, role)
    verb = "grant" if give else "revoke"
    for holder in holders:
        target = Target("user" if isinstance(holder, models.User) else "role", holder.name)
        require(
            session,
            Right.ADD_PRIVILEGE if give else Right.DELETE_PRIVILEGE,
            f"{verb} rights",
            target,
        )
        # Nobody hands out (or takes away) more than they hold themselves.
        require(session, member, f"{verb} {member.value}", target)
    privilege = privilege_for(session, member)
    for holder in holders:
        if isinstance(holder, models.User):
            _change_user(session, holder, privilege, give=give)
        elif give and privilege not in holder.privileges:
            holder.privileges.append(privilege)
        elif not give:
            if privilege not in holder.privileges:
                raise InvalidValue(f"{holder.name!r} does not hold {member.value}")
            holder.privileges.remove(privilege)
    session.flush()
    forget_rights(session)
    return member


def _change_user(
    session: Session, user: models.User, privilege: models.Privilege, *, give: bool
) -> None:
    """Grant to or revoke from one user; a revocation beats the user's roles.

    Granting removes an earlier revocation and grants directly. Revoking
    removes the direct grant, and when a role (or a broader right) still
    grants the right, records a revocation so that it is really gone.
    """
    if give:
        if privilege in user.revoked:
            user.revoked.remove(privilege)
        if privilege not in user.privileges:
            user.privileges.append(privilege)
        return
    held_directly = privilege in user.privileges
    if held_directly:
        user.privileges.remove(privilege)
    session.flush()
    still = effective_rights(session, user.name).allows(privilege.name)
    if still and privilege not in user.revoked:
        user.revoked.append(privilege)
    elif not (held_directly or still):
        raise InvalidValue(f"{user.name!r} does not hold {privilege.name.value}")


def set_roles(
    session: Session, user: models.User, add: tuple[str, ...], remove: tuple[str, ...]
) -> None:
    """Give ``user`` the roles in ``add`` and take away those in ``remove``."""
    require(session, Right.UPDATE_USER, "change users' roles", Target("user", user.name))
    for name in add:
        role = get_by_name(session, models.Role, name)
        if role not in user.roles:
            # A role hands out its rights: nobody gives more than they hold.
            for privilege in role.privileges:
                require(
                    session,
                    privilege.name,
                    f"give the role {role.name} (it grants {privilege.name.value})",
                    Target("user", user.name),
                )
            user.roles.append(role)
    for name in remove:
        role = get_by_name(session, models.Role, name)
        if role not in user.roles:
            raise InvalidValue(f"user {user.name!r} does not have the role {name!r}")
        user.roles.remove(role)
    session.flush()
    forget_rights(session)
