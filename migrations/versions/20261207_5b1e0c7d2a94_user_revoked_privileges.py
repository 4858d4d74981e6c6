"""user_revoked_privileges: a right taken from one user beats the roles granting it; logs by time

Revision ID: 5b1e0c7d2a94
Revises: 89deba486965
Create Date: 2026-12-07 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1e0c7d2a94"
down_revision: str | Sequence[str] | None = "89deba486965"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_revoked_privileges",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("privilege_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["privilege_id"],
            ["privileges.id"],
            name=op.f("fk_user_revoked_privileges_privilege_id_privileges"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_revoked_privileges_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "privilege_id", name=op.f("pk_user_revoked_privileges")),
    )
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index("ix_logs_created", ["created"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index("ix_logs_created")
    op.drop_table("user_revoked_privileges")
