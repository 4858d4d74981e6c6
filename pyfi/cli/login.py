"""`flow login` and `flow logout`: open and end a login on the configured database.

The password is asked for (hidden), read from ``--password-file`` or taken
from ``PYFI_PASSWORD`` — never from the command line (see
:mod:`pyfi.cli.password`). The token a login returns is kept in the user's
config directory (:mod:`pyfi.auth.token_store`), or printed for a script to
put in ``PYFI_TOKEN`` with ``--print-token``; the database keeps only its hash.
"""

from __future__ import annotations

from typing import Any

import click

from pyfi.cli.context import CliContext, pass_flow
from pyfi.cli.password import password_options, take_password
from pyfi.cli.render import note
from pyfi.config import ENV_TOKEN, mask_url


@click.command("login", params=password_options(twice=False))
@click.option("-n", "--name", default=None, help="Your pyfi user name (asked for when left out).")
@click.option(
    "--print-token",
    is_flag=True,
    help=f"Print the token for {ENV_TOKEN} instead of keeping it in your config directory.",
)
@pass_flow
def login(flow: CliContext, name: str | None, print_token: bool, **values: Any) -> None:
    """Log in to the configured database as a pyfi user."""
    from pyfi.auth import token_store
    from pyfi.auth.login import log_in

    flow.without_login()  # an old, expired login must not stand in the way of a new one
    if not name:
        name = str(click.prompt("Name"))
    take_password(values, flow.environ, required=True, twice=False)
    url = flow.settings.database_url
    earlier = None if print_token else token_store.find_token(url, {})
    issued = log_in(
        flow.database,
        name,
        values["password"],
        flow.settings.session_hours,
        replacing=earlier.token if earlier else None,
    )
    until = issued.expires.strftime("%Y-%m-%d %H:%M UTC")
    if print_token:
        click.echo(issued.token)
        note(f"Logged in to {mask_url(url)} as {issued.user_name} until {until}.")
        return
    token_store.save_token(url, issued.token)
    click.echo(f"Logged in to {mask_url(url)} as {issued.user_name} until {until}.")


@click.command("logout")
@pass_flow
def logout(flow: CliContext) -> None:
    """End your login on the configured database and forget its token."""
    from pyfi.auth import token_store, tokens

    flow.without_login()
    url = flow.settings.database_url
    found = token_store.find_token(url, flow.environ)
    kept = token_store.forget_token(url)
    ending = {t for t in (found.token if found else None, kept) if t}
    if not ending:
        click.echo(f"You are not logged in to {mask_url(url)}.")
        return
    with flow.transaction() as session:
        for token in ending:
            tokens.revoke(session, token)
    click.echo(f"Logged out of {mask_url(url)}.")
    if found is not None and found.source == ENV_TOKEN:
        note(f"{ENV_TOKEN} is still set; unset it: the token it holds no longer works.")
