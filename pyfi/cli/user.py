"""`flow user`: add users, change passwords, enable and disable, list, and manage roles.

``flow user add`` is ``flow add user`` under the group the reference gives
it. Disabling a user ends every login of theirs at once; a new password ends
the user's other logins. Each command is one transaction.
"""

from __future__ import annotations

from typing import IO, Any

import click

from pyfi.cli.context import CliContext, FlowGroup, pass_flow
from pyfi.cli.objects import add_group
from pyfi.cli.password import password_options, read_first_line, take_password
from pyfi.cli.render import print_json, print_table

name_option = click.option("-n", "--name", required=True, help="The user's name.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group("user", cls=FlowGroup)
def user_group() -> None:
    """User commands: add, passwd, disable, enable, ls, roles."""


user_group.add_command(add_group.commands["user"], "add")


@user_group.command("passwd", params=password_options())
@click.option("-n", "--name", default=None, help="Whose password (default: your own).")
@click.option(
    "--old-password-file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Read your current password from the first line of this file ('-': standard input).",
)
@pass_flow
def passwd(
    flow: CliContext, name: str | None, old_password_file: IO[str] | None, **values: Any
) -> None:
    """Change your password, or (as an administrator) reset another user's."""
    from pyfi.auth import accounts
    from pyfi.auth.token_store import find_token
    from pyfi.db import models
    from pyfi.objects import get_by_name

    actor = flow.database.actor
    target = name or actor.name
    with flow.transaction() as session:  # no transaction stays open while someone types
        user = get_by_name(session, models.User, target)
        needs_old = accounts.is_self(actor, user) and accounts.has_password(user)
    old = None
    if needs_old:
        old = (
            read_first_line(old_password_file, "--old-password-file")
            if old_password_file
            else str(click.prompt("Current password", hide_input=True))
        )
    take_password(values, flow.environ, required=True)
    found = find_token(flow.settings.database_url, flow.environ)
    with flow.transaction() as session:
        ended = accounts.change_password(
            session,
            actor,
            target,
            values["password"],
            old_password=old,
            keep_token=found.token if found else None,
        )
    click.echo(f"Changed the password of {target}" + _ended(ended))


@user_group.command("disable")
@name_option
@pass_flow
def disable(flow: CliContext, name: str) -> None:
    """Disable a user: they cannot log in, and their logins end now."""
    from pyfi.auth import accounts

    actor = flow.database.actor
    with flow.transaction() as session:
        ended = accounts.set_enabled(session, actor, name, enabled=False)
    click.echo(f"Disabled user {name}" + _ended(ended))


@user_group.command("enable")
@name_option
@pass_flow
def enable(flow: CliContext, name: str) -> None:
    """Enable a disabled user; they log in again with `flow login`."""
    from pyfi.auth import accounts

    actor = flow.database.actor
    with flow.transaction() as session:
        accounts.set_enabled(session, actor, name, enabled=True)
    click.echo(f"Enabled user {name}")


@user_group.command("ls")
@json_option
@pass_flow
def list_users(flow: CliContext, as_json: bool) -> None:
    """List users: e-mail, enabled, roles, last login."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from pyfi.auth.guard import require
    from pyfi.auth.tokens import last_logins
    from pyfi.db import models
    from pyfi.db.enums import Right

    with flow.transaction() as session:
        require(session, Right.LS_USERS, "list users")
        logins = last_logins(session)
        users = session.scalars(
            select(models.User).options(selectinload(models.User.roles)).order_by(models.User.name)
        )
        rows = [
            {
                "name": user.name,
                "id": str(user.id),
                "email": user.email,
                "enabled": user.enabled,
                "roles": [role.name for role in user.roles],
                "last_login": logins.get(user.id),
                "owner": user.owner,
            }
            for user in users
        ]
    if as_json:
        print_json(rows)
        return
    print_table(
        [
            ("Name", "name"),
            ("Email", "email"),
            ("Enabled", "enabled"),
            ("Roles", "roles"),
            ("Last login", "last_login"),
            ("Owner", "owner"),
        ],
        rows,
    )


@user_group.command("roles")
@name_option
@click.option("--add", "add", multiple=True, metavar="ROLE", help="Give the user this role.")
@click.option("--remove", "remove", multiple=True, metavar="ROLE", help="Take this role away.")
@json_option
@pass_flow
def roles(
    flow: CliContext, name: str, add: tuple[str, ...], remove: tuple[str, ...], as_json: bool
) -> None:
    """Show a user's roles and their rights; --add and --remove change them."""
    from pyfi.auth.guard import Target, require
    from pyfi.db import models
    from pyfi.db.enums import Right
    from pyfi.objects import get_by_name, set_roles

    with flow.transaction() as session:
        user = get_by_name(session, models.User, name)
        if add or remove:
            set_roles(session, user, add, remove)
        elif user.name != flow.database.actor.name:  # your own roles are yours to see
            require(session, Right.LS_USER, "see other users' roles", Target("user", name))
        rows = [
            {"role": role.name, "privileges": [p.name.value for p in role.privileges]}
            for role in user.roles
        ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"{name} has no roles")
        return
    print_table([("Role", "role"), ("Rights", "privileges")], rows)


def _ended(count: int) -> str:
    if not count:
        return "."
    return f"; ended {count} login{'s' if count != 1 else ''}."
