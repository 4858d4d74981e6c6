"""`flow whoami`: whom this CLI acts as, how it knows, and what rights are stored for them.

The rights shown are the privileges stored for the user and their roles, as
they are; what they allow, one implying another, is the rights checks' to
decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select

from pyfi.cli.context import CliContext, pass_flow
from pyfi.cli.render import print_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pyfi.auth.actor import Actor

# How an identity was established, as whoami says it.
VIA_TEXT = {
    "token": "a login token (flow login)",
    "os-user": "the operating-system user (embedded database: one user, one machine)",
    "database-login": "the database login",
    "service": "a service's credentials",
}


@click.command("whoami")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_flow
def whoami(flow: CliContext, as_json: bool) -> None:
    """Print the pyfi user you act as, how you were identified, your roles and rights."""
    database = flow.database
    with flow.transaction() as session:
        facts = describe(session, database.actor, database.current_user())
    if as_json:
        print_json(facts)
        return
    click.echo(f"user: {facts['user']}")
    click.echo(f"identified by: {VIA_TEXT.get(facts['identified_by'], facts['identified_by'])}")
    if facts["administrator"]:
        click.echo("administrator: yes (every right)")
    roles = facts["roles"]
    click.echo(
        "roles: "
        + (
            "; ".join(f"{r['name']} ({', '.join(r['privileges']) or 'no rights'})" for r in roles)
            or "none"
        )
    )
    click.echo("direct rights: " + (", ".join(facts["privileges"]) or "none"))
    click.echo(f"database login: {facts['database_login']}")


def describe(session: Session, actor: Actor, database_login: str) -> dict[str, Any]:
    """Whom ``actor`` is, as ``flow whoami --json`` shows it."""
    from pyfi.db import models

    query = select(models.User)
    if actor.user_id is not None:
        query = query.where(models.User.id == actor.user_id)
    else:
        query = query.where(models.User.name == actor.name)
    user = session.scalars(query).one_or_none()
    roles = [
        {"name": role.name, "privileges": [p.name.value for p in role.privileges]}
        for role in (user.roles if user else [])
    ]
    return {
        "user": actor.name,
        "user_id": str(user.id) if user else None,
        "identified_by": actor.via,
        "kind": actor.kind.value,
        "administrator": actor.is_administrator,
        "enabled": user.enabled if user else None,
        "roles": roles,
        "privileges": [p.name.value for p in user.privileges] if user else [],
        "database_login": database_login,
    }
