"""The first administrator, as `flow db init` (and `flow db rebuild`) make it.

On PostgreSQL the administrator's name and password are asked for (hidden,
the password twice) when someone is at the terminal, or come from
``--admin-name``/``PYFI_ADMIN_NAME`` and ``--admin-password-file``/
``PYFI_ADMIN_PASSWORD`` in scripts. There is no default password: a script
that gives neither gets its tables and one line on stderr saying that no
administrator exists yet and how to make one. Half an answer (a name without
a password) is refused before anything is created.

On the embedded SQLite database the operating-system user is the
administrator, without a password (see :mod:`pyfi.auth.bootstrap`).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import click

from pyfi.cli.context import CliContext
from pyfi.cli.password import read_first_line
from pyfi.cli.render import note
from pyfi.config import ENV_ADMIN_EMAIL, ENV_ADMIN_NAME, ENV_ADMIN_PASSWORD
from pyfi.errors import InvalidValue

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class NewAdministrator:
    """Who the first administrator will be; the password already hashed."""

    name: str
    password_hash: str
    email: str | None


def administrator_options(func: F) -> F:
    """``--admin-name``, ``--admin-email`` and ``--admin-password-file``."""
    for option in reversed(
        [
            click.option(
                "--admin-name",
                default=None,
                help=f"Name of the first administrator (PostgreSQL) [env {ENV_ADMIN_NAME}].",
            ),
            click.option(
                "--admin-email",
                default=None,
                help=f"Their e-mail [default: NAME@localhost] [env {ENV_ADMIN_EMAIL}].",
            ),
            click.option(
                "--admin-password-file",
                type=click.File("r", encoding="utf-8"),
                default=None,
                help=f"Read their password from this file's first line [env {ENV_ADMIN_PASSWORD}].",
            ),
        ]
    ):
        func = option(func)
    return func


def administrator_to_create(
    flow: CliContext,
    admin_name: str | None,
    admin_email: str | None,
    admin_password_file: IO[str] | None,
) -> NewAdministrator | None:
    """The administrator to create on a new PostgreSQL database, or None if none was given.

    Asks at a terminal for what is missing; a script must give both name and
    password, or neither.

    Raises
    ------
    InvalidValue
        Only one of name and password given without a terminal to ask for the
        other; an invalid name; a password too short.
    """
    from pyfi.objects.validate import check_name
    from pyfi.passwords import hash_password

    if flow.database.is_sqlite:
        return None
    environ = flow.environ
    name = admin_name or environ.get(ENV_ADMIN_NAME) or None
    if admin_password_file is not None:
        password: str | None = read_first_line(admin_password_file, "--admin-password-file")
    else:
        password = environ.get(ENV_ADMIN_PASSWORD) or None
    interactive = sys.stdin.isatty()
    if not interactive and bool(name) != bool(password):
        raise InvalidValue(
            f"give the first administrator's name ({ENV_ADMIN_NAME} or --admin-name) and "
            f"password ({ENV_ADMIN_PASSWORD} or --admin-password-file) together, or neither"
        )
    if not interactive and not name:
        return None
    if not name:
        name = str(click.prompt("First administrator's name"))
    if not password:
        password = str(
            click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
        )
    check_name(name, "user")
    email = admin_email or environ.get(ENV_ADMIN_EMAIL) or None
    return NewAdministrator(name, hash_password(password), email)


def create_first_administrator(flow: CliContext, admin: NewAdministrator | None) -> None:
    """Make the administrators role and the first administrator, and say what was made."""
    from pyfi.auth.bootstrap import NO_PASSWORD, administrators_role, create_administrator
    from pyfi.objects.validate import NAME_PATTERN

    os_user = getpass.getuser() if flow.database.is_sqlite else None
    with flow.transaction() as session:
        administrators_role(session)
        if os_user is not None and NAME_PATTERN.fullmatch(os_user):
            create_administrator(session, os_user, NO_PASSWORD)
        elif admin is not None:
            create_administrator(session, admin.name, admin.password_hash, admin.email)
    if os_user is not None:
        if NAME_PATTERN.fullmatch(os_user):
            click.echo(
                f"The administrator is you, {os_user}, without a password: "
                "the embedded database has one user, on one machine."
            )
        else:
            note(
                f"note: the operating-system user {os_user!r} is no valid pyfi user name; "
                "the embedded database still treats it as its administrator."
            )
    elif admin is not None:
        click.echo(f"Created the administrator {admin.name}; log in with `flow login`.")
    else:
        note(
            "note: no pyfi administrator exists yet; as the database's owner run "
            "`flow user add -n NAME -e EMAIL` and `flow user roles -n NAME --add administrators`"
        )
