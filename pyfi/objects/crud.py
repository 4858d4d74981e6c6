"""Create, update and delete objects by name, inside the caller's transaction.

Nothing here commits: the caller's ``Database.transaction()`` does, so a
command that fails half-way leaves the database exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pyfi.auth.guard import Target, require
from pyfi.db import models
from pyfi.db.enums import Right
from pyfi.errors import DuplicateObject, InvalidValue, ObjectInUse
from pyfi.objects.kinds import Kind
from pyfi.objects.lookup import ensure_name_free, get_by_name
from pyfi.objects.validate import check_minimums, check_name, coerce_enum

_UNIQUE_COLUMN = re.compile(
    r"UNIQUE constraint failed: \w+\.(\w+)|uq_\w+?_(\w+)\"|Key \((\w+)\)=", re.I
)


def create(session: Session, kind: Kind, values: Mapping[str, Any]) -> Any:
    """Create an object of ``kind`` from ``values`` (None means "not given").

    Raises
    ------
    InvalidValue
        A required field is missing or a value is out of range.
    DuplicateObject
        The name is taken.
    ObjectNotFound
        A referenced object does not exist.
    """
    given = {k: v for k, v in values.items() if v is not None}
    require_on(session, kind, "add", given.get("name"))
    missing = [f for f in kind.required if given.get(f) in (None, "")]
    if missing:
        options = ", ".join(f"--{f.replace('_', '-')}" for f in missing)
        raise InvalidValue(f"a {kind.name} needs {options}")
    name = check_name(str(given["name"]), kind.name)
    ensure_name_free(session, kind.model, name)
    obj = kind.model()
    _assign(session, kind, obj, given)
    session.add(obj)
    flush(session, kind, name)
    _check(session, kind, obj)
    return obj


def update(session: Session, kind: Kind, name: str, values: Mapping[str, Any]) -> Any:
    """Change the given fields of the object of ``kind`` called ``name``.

    ``values["new_name"]`` renames it.
    """
    require_on(session, kind, "update", name)
    obj = get_by_name(session, kind.model, name)
    given = {k: v for k, v in values.items() if v is not None}
    new_name = given.pop("new_name", None)
    if not given and not new_name:
        raise InvalidValue(f"nothing to update; give at least one option to change {name!r}")
    if new_name and new_name != name:
        ensure_name_free(session, kind.model, check_name(new_name, kind.name))
        given["name"] = new_name
    _assign(session, kind, obj, given)
    flush(session, kind, new_name or name)
    _check(session, kind, obj)
    return obj


def delete(session: Session, kind: Kind, name: str) -> dict[str, int]:
    """Delete the object of ``kind`` called ``name``.

    Returns
    -------
    dict
        How many dependent objects went with it, by kind (e.g. ``{"sockets": 2}``).

    Raises
    ------
    ObjectInUse
        Another object still needs it (a queue used by sockets or plugs).
    """
    require_on(session, kind, "delete", name)
    obj = get_by_name(session, kind.model, name)
    if isinstance(obj, models.Queue):
        _refuse_if_queue_used(obj)
    cascaded = _cascade_counts(session, obj)
    session.delete(obj)
    flush(session, kind, name)
    return cascaded


def require_on(session: Session, kind: Kind, verb: str, name: Any) -> None:
    """Refuse ``verb`` (add, update, delete) on ``kind`` without ``VERB_KIND``.

    Rights are per kind: whoever holds ``UPDATE_PROCESSOR`` may change any
    processor, whoever created it (docs/security.md, "Rights").
    """
    right = Right[f"{'ADD' if verb == 'add' else verb.upper()}_{kind.name.upper()}"]
    target = Target(kind.name, str(name)) if name else None
    require(session, right, f"{verb} {kind.plural}", target)


def flush(session: Session, kind: Kind, name: str) -> None:
    """Flush, turning integrity violations into one-line user errors."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise _explain_integrity(exc, kind, name) from exc


def _check(session: Session, kind: Kind, obj: Any) -> None:
    # After the flush, so the check sees the object among the rest of the
    # model; its exception rolls the caller's transaction back.
    if kind.check is not None:
        kind.check(session, obj)


def _assign(session: Session, kind: Kind, obj: Any, given: Mapping[str, Any]) -> None:
    # Lookups by name would otherwise flush the half-built object.
    with session.no_autoflush:
        _assign_fields(session, kind, obj, given)


def _assign_fields(session: Session, kind: Kind, obj: Any, given: Mapping[str, Any]) -> None:
    check_minimums(given)
    for field, enum_class in kind.enums.items():
        if field in given:
            given = {**given, field: coerce_enum(enum_class, given[field], field)}
    plain = {k: v for k, v in given.items() if k not in kind.resolvers}
    for field, value in plain.items():
        if not hasattr(kind.model, field):
            raise InvalidValue(f"a {kind.name} has no field {field!r}")
        setattr(obj, field, value)
    for field, resolve in kind.resolvers.items():
        if field in given:
            resolve(session, obj, given[field])
    if kind.finish is not None:
        kind.finish(session, obj)


def _refuse_if_queue_used(queue: models.Queue) -> None:
    users = [f"socket {s.name}" for s in queue.sockets] + [f"plug {p.name}" for p in queue.plugs]
    if users:
        shown = ", ".join(users[:5]) + (" ..." if len(users) > 5 else "")
        raise ObjectInUse(
            f"queue {queue.name!r} is used by {shown}; delete them or move them to "
            "another queue first"
        )


def _cascade_counts(session: Session, obj: Any) -> dict[str, int]:
    """Count what ON DELETE CASCADE will take with ``obj``, to tell the user."""
    socket_ids: list[Any] = []
    counts: dict[str, int] = {}
    if isinstance(obj, models.Processor):
        socket_ids = [s.id for s in obj.sockets]
        counts["sockets"] = len(socket_ids)
    elif isinstance(obj, models.Socket):
        socket_ids = [obj.id]
    if socket_ids:
        plugs = session.scalar(
            select(func.count())
            .select_from(models.Plug)
            .where(models.Plug.source_id.in_(socket_ids) | models.Plug.target_id.in_(socket_ids))
        )
        counts["plugs"] = int(plugs or 0)
    return {k: v for k, v in counts.items() if v}


def _explain_integrity(exc: IntegrityError, kind: Kind, name: str) -> Exception:
    detail = str(exc.orig) if exc.orig is not None else str(exc)
    if "unique" in detail.lower() or "duplicate key" in detail.lower():
        match = _UNIQUE_COLUMN.search(detail)
        column = next((g for g in match.groups() if g), "name") if match else "name"
        if column == "name":
            return DuplicateObject(kind.name, name)
        return InvalidValue(f"another {kind.name} already has that {column}; choose another")
    first = next((line for line in detail.splitlines() if line.strip()), detail)
    return InvalidValue(f"the database refused the {kind.name} {name!r}: {first.strip()}")
