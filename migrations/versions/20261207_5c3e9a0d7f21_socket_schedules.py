"""sockets: schedule time zone, input, misfire policy, pause; schedule_fires

A socket's ``interval`` or ``cron`` is now fired by the agents' scheduler:
the cron expression is read in ``timezone`` (NULL: UTC), the call passes
``input`` (JSON), ``misfire`` and ``catch_up`` say what happens to instants
missed while no scheduler ran, and ``paused`` stops the schedule without
disabling the socket. ``schedule_fires`` holds one row per fired instant,
unique per (socket, instant): the claim that keeps an instant from firing
twice.

Revision ID: 5c3e9a0d7f21
Revises: f74edbb0ac12
Create Date: 2026-12-07 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import pyfi.db.types

revision: str = "5c3e9a0d7f21"
down_revision: str | Sequence[str] | None = "f74edbb0ac12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sockets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("input", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "misfire",
                sa.Enum(
                    "skip",
                    "catch-up",
                    name="misfire",
                    native_enum=False,
                    create_constraint=False,
                    length=8,
                ),
                server_default="skip",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("catch_up", sa.Integer(), server_default="10", nullable=False)
        )
        batch_op.add_column(
            sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_sockets_misfire"), sa.text("misfire IN ('skip', 'catch-up')")
        )
        batch_op.create_check_constraint(
            op.f("ck_sockets_catch_up_positive"), sa.text("catch_up >= 1")
        )
    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("socket_id", sa.Uuid(), nullable=False),
        sa.Column("instant", pyfi.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fired", pyfi.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("agent", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["socket_id"],
            ["sockets.id"],
            name=op.f("fk_schedule_fires_socket_id_sockets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint("socket_id", "instant", name=op.f("uq_schedule_fires_socket_id")),
    )


def downgrade() -> None:
    op.drop_table("schedule_fires")
    with op.batch_alter_table("sockets", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_sockets_catch_up_positive"), type_="check")
        batch_op.drop_constraint(op.f("ck_sockets_misfire"), type_="check")
        batch_op.drop_column("paused")
        batch_op.drop_column("catch_up")
        batch_op.drop_column("misfire")
        batch_op.drop_column("input")
        batch_op.drop_column("timezone")
