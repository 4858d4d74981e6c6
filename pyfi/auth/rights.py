"""A user's effective rights: what their grants, roles and revocations add up to.

Effective rights = everything granted to the user directly or through any of
their roles, minus everything revoked from the user — each side first
widened by the implications below, so a revocation always beats a grant,
whichever role the grant comes from.

Implications (the reference's broad rights stand for whole families):

* ``ALL`` implies every right;
* ``CREATE`` implies every ``ADD_*``;
* ``READ`` implies every ``LS_*``, ``READ_*`` and ``VIEW_*``;
* ``UPDATE`` implies every ``UPDATE_*`` and ``EDIT_*``;
* ``DELETE`` implies every ``DELETE_*``.

A disabled user, and a name without a user row, have no rights at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import literal, select, union_all
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.db.enums import Right

_FAMILIES: Mapping[Right, tuple[str, ...]] = {
    Right.CREATE: ("ADD_",),
    Right.READ: ("LS_", "READ_", "VIEW_"),
    Right.UPDATE: ("UPDATE_", "EDIT_"),
    Right.DELETE: ("DELETE_",),
}


def _implied(right: Right) -> frozenset[Right]:
    if right is Right.ALL:
        return frozenset(Right)
    prefixes = _FAMILIES.get(right, ())
    return frozenset({right, *(r for r in Right if r.value.startswith(prefixes) and prefixes)})


# Each right with everything it implies (itself included), computed once.
IMPLIES: Mapping[Right, frozenset[Right]] = {right: _implied(right) for right in Right}


def widen(rights: Iterable[Right]) -> frozenset[Right]:
    """``rights`` with everything they imply."""
    found: set[Right] = set()
    for right in rights:
        found |= IMPLIES[right]
    return frozenset(found)


@dataclass(frozen=True)
class Rights:
    """What one user may do, as read in one transaction.

    ``refusal`` says why the user has no rights at all (no such user, or
    disabled); ``None`` for an existing, enabled user.
    """

    name: str
    user_id: uuid.UUID | None
    granted: frozenset[Right]
    refusal: str | None = None

    def allows(self, right: Right) -> bool:
        """True when ``right`` is among the effective rights."""
        return right in self.granted


def effective_rights(session: Session, name: str) -> Rights:
    """The effective rights of the pyfi user called ``name`` (see the module docstring)."""
    user = session.execute(
        select(models.User.id, models.User.enabled).where(models.User.name == name)
    ).one_or_none()
    if user is None:
        return Rights(name, None, frozenset(), refusal=f"no pyfi user named {name}")
    user_id, enabled = user
    if not enabled:
        return Rights(name, user_id, frozenset(), refusal=f"the user {name} is disabled")
    granted, revoked = _rows(session, user_id)
    return Rights(name, user_id, widen(granted) - widen(revoked))


def _rows(session: Session, user_id: uuid.UUID) -> tuple[list[Right], list[Right]]:
    """The user's granted and revoked rights as stored, in one round trip."""
    privilege = models.Privilege
    direct = (
        select(privilege.name, literal(True).label("granted"))
        .join(models.user_privileges, models.user_privileges.c.privilege_id == privilege.id)
        .where(models.user_privileges.c.user_id == user_id)
    )
    via_roles = (
        select(privilege.name, literal(True).label("granted"))
        .join(models.role_privileges, models.role_privileges.c.privilege_id == privilege.id)
        .join(models.user_roles, models.user_roles.c.role_id == models.role_privileges.c.role_id)
        .where(models.user_roles.c.user_id == user_id)
    )
    revoked = (
        select(privilege.name, literal(False).label("granted"))
        .join(
            models.user_revoked_privileges,
            models.user_revoked_privileges.c.privilege_id == privilege.id,
        )
        .where(models.user_revoked_privileges.c.user_id == user_id)
    )
    granted_rights: list[Right] = []
    revoked_rights: list[Right] = []
    for name, is_grant in session.execute(union_all(direct, via_roles, revoked)):
        right = Right(name)
        (granted_rights if is_grant else revoked_rights).append(right)
    return granted_rights, revoked_rights
