"""The one chokepoint every action passes: :func:`require`.

Each door (the object API, listings, grants, processor commands, task runs,
dead-letter replays, database operations, compose apply, agent start) calls
:func:`require` inside the transaction of the action it guards, so the check
reads the rights as they are in that transaction — a grant or revocation
counts from the next transaction on.

Who is checked (see :mod:`pyfi.auth.actor`): a USER actor, against the
user's effective rights (:mod:`pyfi.auth.rights`). The administrator
connection and services pass unchecked and unlogged: their login can rewrite
every table, including the log, so refusing or logging them in pyfi would
prove nothing.

Every check of a user is appended to the audit log (the ``logs`` table,
``source = "rights"``): an allowed check in the action's own transaction (so
it lands exactly when the action does), a refused one after that transaction
rolls back, in a short transaction of its own (see
:meth:`pyfi.db.session.Database.transaction`), so refusals are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfi.auth.actor import ActorKind, actor_of
from pyfi.auth.rights import IMPLIES, Rights, effective_rights
from pyfi.db.enums import Right
from pyfi.db.models.runtime import Log
from pyfi.errors import Forbidden

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# session.info keys: the rights read once per transaction, the checks already
# logged in it, and the refusals to write once it has rolled back.
RIGHTS_KEY = "pyfi.rights"
LOGGED_KEY = "pyfi.rights.logged"
REFUSALS_KEY = "pyfi.rights.refusals"
REHEARSAL_KEY = "pyfi.rights.rehearsal"

# The ``source`` of the audit log's lines.
AUDIT_SOURCE = "rights"


@dataclass(frozen=True)
class Target:
    """The object an action is about, for the audit log."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def require(session: Session, right: Right, action: str, target: Target | None = None) -> None:
    """Refuse the action unless the session's actor holds ``right``.

    ``action`` completes "NAME may not ..." (e.g. ``"delete processors"``).

    Raises
    ------
    Forbidden
        The actor is a user without ``right`` (or a disabled or unknown user).
    """
    actor = actor_of(session)
    if actor is None or actor.kind is not ActorKind.USER:
        return
    if session.info.get(REHEARSAL_KEY) and right not in IMPLIES[Right.READ]:
        return
    rights = rights_of(session, actor.name)
    allowed = rights.allows(right)
    _audit(session, rights, right, action, target, allowed=allowed)
    if allowed:
        return
    name = actor.name
    if rights.refusal is not None:
        raise Forbidden(f"{name} may not {action} ({rights.refusal}); ask an administrator")
    raise Forbidden(f"{name} may not {action} (needs {right.value}); ask an administrator")


@contextmanager
def rehearsal(session: Session) -> Iterator[None]:
    """Check only reading rights: for a dry run, whose transaction always rolls back.

    The caller must roll the transaction back (raise out of it) before the
    block ends; a rehearsal that would commit is refused.
    """
    require(session, Right.READ, "preview changes")
    session.info[REHEARSAL_KEY] = True
    try:
        yield
    finally:
        session.info.pop(REHEARSAL_KEY, None)
    raise RuntimeError("a rehearsal must roll its transaction back")  # pragma: no cover


def rights_of(session: Session, name: str) -> Rights:
    """The effective rights of ``name``, read once per transaction."""
    cached = session.info.get(RIGHTS_KEY)
    if isinstance(cached, Rights) and cached.name == name:
        return cached
    rights = effective_rights(session, name)
    session.info[RIGHTS_KEY] = rights
    return rights


def forget_rights(session: Session) -> None:
    """Drop the rights read in this transaction (after a grant, a revocation, a role change)."""
    session.info.pop(RIGHTS_KEY, None)


def _audit(
    session: Session,
    rights: Rights,
    right: Right,
    action: str,
    target: Target | None,
    *,
    allowed: bool,
) -> None:
    outcome = "allowed" if allowed else "refused"
    line = f"{outcome} {right.value}: {action}" + (f" ({target})" if target else "")
    logged: set[str] = session.info.setdefault(LOGGED_KEY, set())
    if line in logged:  # e.g. compose apply checking each field of one object
        return
    logged.add(line)
    entry: dict[str, Any] = {
        "owner": rights.name,
        "source": AUDIT_SOURCE,
        "text": line,
        "object_kind": target.kind if target else None,
        "user_id": rights.user_id,
    }
    if allowed:
        session.add(Log(**entry))
    else:
        session.info.setdefault(REFUSALS_KEY, []).append(entry)


def write_refusals(session: Session, entries: list[dict[str, Any]]) -> None:
    """Add the refused checks of a rolled-back transaction to ``session``."""
    for entry in entries:
        session.add(Log(**entry))
