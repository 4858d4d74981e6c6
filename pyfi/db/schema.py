"""Create, migrate, check and drop the meta-model schema through alembic.

Migrations are the only way tables come to exist: ``flow db init`` runs them
to head rather than calling ``create_all``, so a database initialised today
and one migrated from an older release have the same schema.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from sqlalchemy import MetaData, inspect

from pyfi.auth.actor import ActorKind
from pyfi.auth.guard import require
from pyfi.db.enums import Right
from pyfi.db.models import Base
from pyfi.db.session import Database
from pyfi.errors import ConfigurationError

VERSION_TABLE = "alembic_version"


def alembic_config(connection: Any | None = None) -> Any:
    """An alembic ``Config`` pointing at the migrations installed with pyfi."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("pyfi.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of pyfi."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "pyfi ships at least one migration"
    return head


def current_revision(database: Database) -> str | None:
    """The revision the database is at, or None if it was never initialised."""
    from alembic.runtime.migration import MigrationContext

    with database.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; returns (before, after)."""
    from alembic import command
    from alembic.util.exc import CommandError

    before = current_revision(database)
    if before is not None and (revision != "head" or before != head_revision()):
        require_of_database(database, Right.DB_INIT, "migrate the database")
    with database.engine.begin() as conn:
        try:
            command.upgrade(alembic_config(conn), revision)
        except CommandError as exc:
            raise ConfigurationError(f"cannot migrate to {revision!r}: {exc}") from exc
    return before, current_revision(database) or ""


def downgrade(database: Database, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` removes every table)."""
    from alembic import command

    require_of_database(database, Right.DB_DROP, "migrate the database down")
    with database.engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def differences(database: Database) -> list[Any]:
    """What autogenerate would change to make the database equal the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with database.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "render_as_batch": True,
                "include_name": only_model_tables,
            },
        )
        return list(compare_metadata(context, Base.metadata))


def only_model_tables(name: str | None, type_: str, _parents: Any) -> bool:
    """Compare only the meta-model's tables: others in the database are not ours.

    (The result backend, pointed at the same database, keeps its own tables.)
    """
    return type_ != "table" or name in Base.metadata.tables


def pyfi_tables(database: Database) -> list[str]:
    """The pyfi tables (and the alembic version table) present in the database."""
    with database.connect() as conn:
        present = set(inspect(conn).get_table_names())
    known = set(Base.metadata.tables) | {VERSION_TABLE}
    return sorted(present & known)


def require_of_database(database: Database, right: Right, action: str) -> None:
    """Check ``right`` for an operation on the schema itself, in a transaction of its own.

    The operation runs outside any session (DDL), so the check is made, and
    logged, just before it. The administrator connection (the one that owns
    the tables) passes without reading anything.
    """
    if database.actor.kind is not ActorKind.USER:
        return
    with database.transaction() as session:
        require(session, right, action)


def drop_all(database: Database) -> list[str]:
    """Drop every pyfi table, leaving other tables of the database alone."""
    dropped = pyfi_tables(database)
    if dropped:
        require_of_database(database, Right.DB_DROP, "drop the database")
    with database.engine.begin() as conn:
        Base.metadata.drop_all(conn)
        reflected = MetaData()
        reflected.reflect(conn, only=lambda name, _meta: name == VERSION_TABLE)
        reflected.drop_all(conn)
    return dropped
