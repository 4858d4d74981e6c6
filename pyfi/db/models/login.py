"""Logins: the sessions ``flow login`` opens, and the failed attempts it counts.

A login session is found by the SHA-256 of its token; the token itself is
never stored, so a copy of this table (a dump, a backup) logs nobody in.
Failed attempts are counted by the name that was tried, whether a user of
that name exists or not, so the throttle answers an unknown name exactly as
it answers a wrong password.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pyfi.db.base import Base, Identified, optional_timestamp, timestamp
from pyfi.db.types import UTCDateTime


class LoginSession(Identified, Base):
    """One login: whose, until when, and whether it was ended early."""

    __tablename__ = "login_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # hex SHA-256 of the token; marked secret so that no dump shows it either.
    token_hash: Mapped[str] = mapped_column(
        String(64), nullable=False, unique=True, info={"secret": True}
    )
    created: Mapped[timestamp]
    expires: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[optional_timestamp]
    last_used: Mapped[optional_timestamp]


class LoginFailure(Base):
    """Recent failed logins under one name, and how long that name is locked out."""

    __tablename__ = "login_failures"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    # Failures since ``window_start``; reaching the limit locks the name out.
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    window_start: Mapped[timestamp]
    last_failure: Mapped[timestamp]
    locked_until: Mapped[optional_timestamp]
    # Lock-outs so far: each one lasts twice as long as the one before.
    lockouts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
