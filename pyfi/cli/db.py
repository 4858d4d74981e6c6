"""`flow db`: create, migrate, check, dump and drop the meta-model database."""

from __future__ import annotations

from typing import IO

import click
from sqlalchemy import select

from pyfi.cli.bootstrap import (
    administrator_options,
    administrator_to_create,
    create_first_administrator,
)
from pyfi.cli.context import CliContext, FlowGroup, pass_flow
from pyfi.cli.render import note, print_json
from pyfi.config import mask_url
from pyfi.db.enums import Right
from pyfi.errors import DatabaseNotInitialised, InvalidValue

yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")


@click.group("db", cls=FlowGroup)
def db_group() -> None:
    """Database operations."""


@db_group.command("init")
@administrator_options
@pass_flow
def init(
    flow: CliContext,
    admin_name: str | None,
    admin_email: str | None,
    admin_password_file: IO[str] | None,
) -> None:
    """Create every table and the first administrator (see docs/security.md)."""
    from pyfi.db import schema

    flow.without_login()  # a login kept for an earlier database of this URL means nothing now
    database = flow.database
    where = mask_url(database.url)
    current = schema.current_revision(database)
    head = schema.head_revision()
    if current is not None:  # tables there already: only DB_INIT may touch them
        schema.require_of_database(database, Right.DB_INIT, "initialise the database")
    if current == head:
        click.echo(f"The database {where} is already initialised (revision {head}).")
        return
    if current is not None:
        raise InvalidValue(
            f"the database {where} is at revision {current}, older than {head}; "
            "upgrade it with `flow db migrate`"
        )
    # An empty version table (left by a downgrade to base) is no history.
    if set(schema.pyfi_tables(database)) - {schema.VERSION_TABLE}:
        raise InvalidValue(
            f"the database {where} has pyfi tables but no migration history; "
            "recreate it with `flow db rebuild`"
        )
    # Asked for (and checked) before anything is created.
    admin = administrator_to_create(flow, admin_name, admin_email, admin_password_file)
    schema.upgrade(database)
    count = len(schema.pyfi_tables(database)) - 1  # minus the alembic version table
    click.echo(f"Initialised the database {where}: {count} tables at revision {head}.")
    create_first_administrator(flow, admin)


@db_group.command("migrate")
@click.option("-r", "--revision", default="head", show_default=True, help="Target revision.")
@pass_flow
def migrate(flow: CliContext, revision: str) -> None:
    """Upgrade the database schema to the given revision."""
    from pyfi.db import schema

    before, after = schema.upgrade(flow.database, revision)
    where = mask_url(flow.database.url)
    if before == after:
        click.echo(f"The database {where} is already at revision {after}.")
    else:
        click.echo(f"Migrated the database {where} from {before or 'empty'} to {after}.")


@db_group.command("check")
@pass_flow
def check(flow: CliContext) -> None:
    """Fail if the database schema differs from the models (like `alembic check`)."""
    from pyfi.db import schema

    if schema.current_revision(flow.database) is None:
        raise DatabaseNotInitialised()
    found = schema.differences(flow.database)
    if found:
        for difference in found:
            note(f"  {difference}")
        raise InvalidValue(
            f"the database schema differs from the models in {len(found)} place(s); "
            "run `flow db migrate`"
        )
    click.echo("The database schema matches the models.")


def _confirm_destruction(flow: CliContext, yes: bool, action: str) -> None:
    if yes:
        return
    click.confirm(
        f"{action} every pyfi table in {mask_url(flow.database.url)}? "
        "All processors, sockets, plugs, calls and users will be lost",
        abort=True,
    )


@db_group.command("drop")
@yes_option
@pass_flow
def drop(flow: CliContext, yes: bool) -> None:
    """Drop all pyfi tables."""
    from pyfi.db import schema

    _confirm_destruction(flow, yes, "Drop")
    dropped = schema.drop_all(flow.database)
    click.echo(f"Dropped {len(dropped)} tables from {mask_url(flow.database.url)}.")


@db_group.command("rebuild")
@yes_option
@administrator_options
@pass_flow
def rebuild(
    flow: CliContext,
    yes: bool,
    admin_name: str | None,
    admin_email: str | None,
    admin_password_file: IO[str] | None,
) -> None:
    """Drop all pyfi tables and create them again, with a first administrator."""
    from pyfi.db import schema

    flow.without_login()  # every login goes with the tables: act as the connection
    _confirm_destruction(flow, yes, "Drop and recreate")
    if schema.pyfi_tables(flow.database):  # after the drop there is no one to ask
        schema.require_of_database(flow.database, Right.DB_INIT, "rebuild the database")
    admin = administrator_to_create(flow, admin_name, admin_email, admin_password_file)
    schema.drop_all(flow.database)
    _before, head = schema.upgrade(flow.database)
    click.echo(f"Rebuilt the database {mask_url(flow.database.url)} at revision {head}.")
    create_first_administrator(flow, admin)


@db_group.command("json")
@pass_flow
def dump_json(flow: CliContext) -> None:
    """Dump every object of the database as JSON (secrets left out, URLs masked)."""
    from pyfi.auth.guard import require
    from pyfi.db.models import Base
    from pyfi.db.serialize import is_secret, json_value, shown

    dump: dict[str, list[dict[str, object]]] = {}
    with flow.transaction() as session:
        require(session, Right.READ, "dump the database")
        for table in Base.metadata.sorted_tables:
            visible = [c for c in table.columns if not is_secret(c)]
            order = [c for c in table.primary_key.columns]
            rows = session.execute(select(*visible).order_by(*order))
            dump[table.name] = [
                {c.name: json_value(shown(c, value)) for c, value in zip(visible, row, strict=True)}
                for row in rows
            ]
    print_json(dump)
