"""How a password reaches `flow`: asked for, read from a file, or from the environment.

Never from the command line: a command's arguments are kept in shell history
and shown to every user of the host by ``ps``. So ``-p``/``--password`` takes
no value (it asks, hidden and twice, as the reference's ``flow add user`` did
when ``-p`` was left out), and a value given to it is refused with one line
saying what to do instead. Scripts pass the password in a file
(``--password-file FILE``, ``-`` for standard input) or in
:data:`ENV_PASSWORD`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import click

from pyfi.config import ENV_PASSWORD

# What `-p` given alone stands for: "ask me".
_ASK = "\0ask"


def _refuse_value(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and value != _ASK:
        # The message must not repeat the value: it is a password.
        raise click.BadParameter(
            "a password is never taken on the command line (shell history and `ps` show it); "
            f"give -p alone to be asked, or use --password-file FILE or {ENV_PASSWORD}"
        )
    return value


def password_options(*, twice: bool = True) -> list[click.Parameter]:
    """``-p/--password`` (ask) and ``--password-file``, for commands that take a password.

    ``twice``: a new password is asked for twice (a typo would lock its
    owner out); a password being checked (``flow login``) only once.
    """
    asked = "hidden, twice" if twice else "hidden"
    return [
        click.Option(
            ["-p", "--password", "password"],
            is_flag=False,
            flag_value=_ASK,
            default=None,
            metavar="",
            callback=_refuse_value,
            help=f"Ask for the password ({asked}); {ENV_PASSWORD} supplies it instead.",
        ),
        click.Option(
            ["--password-file", "password_file"],
            type=click.File("r", encoding="utf-8"),
            default=None,
            help="Read the password from the first line of this file ('-': standard input).",
        ),
    ]


def take_password(
    values: dict[str, Any], environ: Mapping[str, str], *, required: bool, twice: bool = True
) -> None:
    """Replace the password options in ``values`` by the password, if one is to be set.

    The password comes from ``--password-file``, else :data:`ENV_PASSWORD`,
    else a hidden prompt. Without ``required`` (an update) nothing is set
    unless ``-p`` or ``--password-file`` was given.
    """
    ask = values.pop("password", None) is not None
    handle: IO[str] | None = values.pop("password_file", None)
    if handle is not None:
        if ask:
            raise click.UsageError("give -p or --password-file, not both")
        values["password"] = read_first_line(handle)
    elif ask or required:
        values["password"] = environ.get(ENV_PASSWORD) or click.prompt(
            "Password", hide_input=True, confirmation_prompt=twice
        )


def read_first_line(handle: IO[str], option: str = "--password-file") -> str:
    """The password on the first line of a file given to ``option``."""
    lines = handle.read().splitlines()
    if not lines or not lines[0]:
        name = getattr(handle, "name", "the password file")
        raise click.BadParameter(
            f"{name} holds no password on its first line", param_hint=f"'{option}'"
        )
    return lines[0]
