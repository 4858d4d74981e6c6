"""The meta-model: every table of pyfi, importable from one place.

Use ``from pyfi.db import models`` and ``models.Processor`` where a client class
of the same name is in scope.
"""

from __future__ import annotations

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from pyfi.db.base import Audited, Base, Identified, unique_name
from pyfi.db.models.auth import (
    Privilege,
    Role,
    User,
    role_privileges,
    user_privileges,
    user_revoked_privileges,
    user_roles,
)
from pyfi.db.models.flow import Argument, Plug, Processor, Queue, Socket, Task
from pyfi.db.models.login import LoginFailure, LoginSession
from pyfi.db.models.runtime import Call, Event, Log, ScheduleFire
from pyfi.db.models.topology import Agent, Deployment, Network, Node, Scheduler, Worker


class Setting(Identified, Audited, Base):
    """A named value shared by every pyfi process (e.g. ``allowed_repos``)."""

    __tablename__ = "settings"

    name: Mapped[unique_name]
    value: Mapped[str] = mapped_column(Text, nullable=False)


__all__ = [
    "Agent",
    "Argument",
    "Base",
    "Call",
    "Deployment",
    "Event",
    "Log",
    "LoginFailure",
    "LoginSession",
    "Network",
    "Node",
    "Plug",
    "Privilege",
    "Processor",
    "Queue",
    "Role",
    "ScheduleFire",
    "Scheduler",
    "Setting",
    "Socket",
    "Task",
    "User",
    "Worker",
    "role_privileges",
    "user_privileges",
    "user_revoked_privileges",
    "user_roles",
]
