"""Who may do what: users, roles and privileges.

Passwords are never stored: ``password_hash`` holds an argon2id hash (see
:mod:`pyfi.passwords`), and the column is marked secret so that no dump or
listing ever prints it.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfi.db.base import Audited, Base, Identified, unique_name
from pyfi.db.enums import Right
from pyfi.db.types import enum_column

user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)

user_privileges = Table(
    "user_privileges",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("privilege_id", ForeignKey("privileges.id", ondelete="CASCADE"), primary_key=True),
)

# A right taken from one user even though a role of theirs grants it: a
# revocation beats every grant (see pyfi.auth.rights).
user_revoked_privileges = Table(
    "user_revoked_privileges",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("privilege_id", ForeignKey("privileges.id", ondelete="CASCADE"), primary_key=True),
)

role_privileges = Table(
    "role_privileges",
    Base.metadata,
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("privilege_id", ForeignKey("privileges.id", ondelete="CASCADE"), primary_key=True),
)


class Privilege(Identified, Audited, Base):
    """A right (e.g. ``ADD_PROCESSOR``) that can be granted to users and roles."""

    __tablename__ = "privileges"

    name: Mapped[Right] = mapped_column(enum_column(Right, "right"), nullable=False, unique=True)


class Role(Identified, Audited, Base):
    """A named bundle of privileges."""

    __tablename__ = "roles"

    name: Mapped[unique_name]
    privileges: Mapped[list[Privilege]] = relationship(
        secondary=role_privileges, order_by="Privilege.name"
    )


class User(Identified, Audited, Base):
    """A person or service that uses pyfi."""

    __tablename__ = "users"

    name: Mapped[unique_name]
    email: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False, info={"secret": True})
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)

    roles: Mapped[list[Role]] = relationship(secondary=user_roles, order_by="Role.name")
    privileges: Mapped[list[Privilege]] = relationship(
        secondary=user_privileges, order_by="Privilege.name"
    )
    revoked: Mapped[list[Privilege]] = relationship(
        secondary=user_revoked_privileges, order_by="Privilege.name"
    )
