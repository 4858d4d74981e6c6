"""login_sessions and login_failures: `flow login` and its throttle

A login session is found by the SHA-256 of its token (the token is never
stored); failed logins are counted by the name tried, known or not.

Revision ID: f74edbb0ac12
Revises: 5b1e0c7d2a94
Create Date: 2026-12-07 22:08:44
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import pyfi.db.types

revision: str = "f74edbb0ac12"
down_revision: str | Sequence[str] | None = "5b1e0c7d2a94"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", pyfi.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_failure", pyfi.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", pyfi.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_login_failures")),
    )
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created", pyfi.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires", pyfi.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", pyfi.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used", pyfi.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_login_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_login_sessions_token_hash")),
    )
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_sessions_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_sessions_user_id"))

    op.drop_table("login_sessions")
    op.drop_table("login_failures")
