"""Alembic environment for the pyfi meta-model.

Run either through ``flow db ...`` (which hands over an open connection in
``config.attributes["connection"]``) or through the ``alembic`` command from
the repository root, which reads the URL from ``PYFI_DB`` or ``alembic.ini``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from pyfi.db.models import Base
from pyfi.db.schema import only_model_tables

config = context.config
target_metadata = Base.metadata


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies tables.
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
        user_module_prefix="pyfi.db.types.",
        include_name=only_model_tables,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    url = os.environ.get("PYFI_DB") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        user_module_prefix="pyfi.db.types.",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    section = config.get_section(config.config_ini_section, {})
    if os.environ.get("PYFI_DB"):
        section["sqlalchemy.url"] = os.environ["PYFI_DB"]
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
