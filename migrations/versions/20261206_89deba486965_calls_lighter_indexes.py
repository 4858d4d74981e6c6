"""calls: only the indexes queries use; socket_id no longer a foreign key

Every recorded call pays for every index of ``calls`` and for the foreign
key's lookup of its socket. ``name``, ``parent_id``, ``state`` and
``(socket_id, created)`` served no query (a run's children are found through
``tracking_id``); ``created`` (listing newest first) and a partial index of
the unfinished calls by time replace them. Without the foreign key, deleting
a socket leaves its calls' history as it was instead of rewriting it.

Revision ID: 89deba486965
Revises: 4be080f6a066
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "89deba486965"
down_revision: str | Sequence[str] | None = "4be080f6a066"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported: a migration must not change when the models do.
UNFINISHED_CALL = sa.text("state IN ('pending', 'received', 'running', 'retrying')")


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint("fk_calls_socket_id_sockets", type_="foreignkey")
        batch_op.drop_index("ix_calls_name")
        batch_op.drop_index("ix_calls_parent_id")
        batch_op.drop_index("ix_calls_state")
        batch_op.drop_index("ix_calls_socket_id_created")
        batch_op.create_index("ix_calls_created", ["created"], unique=False)
        batch_op.create_index(
            "ix_calls_unfinished",
            ["created"],
            unique=False,
            postgresql_where=UNFINISHED_CALL,
            sqlite_where=UNFINISHED_CALL,
        )


def downgrade() -> None:
    # The foreign key refuses ids of sockets deleted since: they go, as they
    # would have under ON DELETE SET NULL.
    op.execute(
        "UPDATE calls SET socket_id = NULL WHERE socket_id IS NOT NULL"
        " AND socket_id NOT IN (SELECT id FROM sockets)"
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_unfinished")
        batch_op.drop_index("ix_calls_created")
        batch_op.create_index("ix_calls_socket_id_created", ["socket_id", "created"], unique=False)
        batch_op.create_index("ix_calls_state", ["state"], unique=False)
        batch_op.create_index("ix_calls_parent_id", ["parent_id"], unique=False)
        batch_op.create_index("ix_calls_name", ["name"], unique=False)
        batch_op.create_foreign_key(
            "fk_calls_socket_id_sockets", "sockets", ["socket_id"], ["id"], ondelete="SET NULL"
        )
