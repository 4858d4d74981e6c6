"""The object API: `Processor(...)`, `Plug(...)` and :func:`upsert_socket` create or update rows.

Each constructor call is one transaction on the default connection (or on
``database=``): the object is created if its name is new, otherwise only the
fields that differ are written, so running a script twice changes nothing
the second time. The same rules and errors as :mod:`pyfi.network.declare`
apply (they are the `flow add` errors), and the whole network is checked
before the transaction commits.

Every object exposes ``.name``, ``.id`` and a plain-dict snapshot of its row
(``.processor``, ``.plug``), with the names of the objects it refers to;
:class:`AlchemyEncoder` turns such a dict into JSON.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Session

from pyfi.client.decorators import (
    ProcessorBase,
    QueueRef,
    name_of,
    queue_decl,
    socket_declarations,
)
from pyfi.db import models
from pyfi.db.serialize import to_dict
from pyfi.db.session import Database
from pyfi.errors import InvalidValue
from pyfi.network.declare import (
    Declaration,
    Network,
    PlugDecl,
    ProcessorDecl,
    apply,
)
from pyfi.objects.lookup import find_by_name, get_by_name

__all__ = ["AlchemyEncoder", "Plug", "Processor", "ProcessorBase", "upsert_socket"]


class AlchemyEncoder(json.JSONEncoder):
    """JSON for row snapshots: datetimes as ISO 8601, UUIDs as text, enums by value.

    A mapped object is written as its columns (secrets left out).
    """

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, enum.Enum):
            return o.value
        if isinstance(o, DeclarativeBase):
            return to_dict(o)
        if isinstance(o, set | frozenset | tuple):
            return list(o)
        return super().default(o)


class Processor:
    """Create or update the processor ``name`` with ``fields`` (``module``, ``gitrepo``, ...).

    Parameters
    ----------
    name:
        The processor's name.
    user:
        :data:`pyfi.client.user.USER` or a pyfi user name: recorded as the
        row's user when such a user exists (rows always record their owner).
    database:
        Where to write; default: the default connection.
    fields:
        Any field of ``flow add processor``: ``module``, ``gitrepo``, ``branch``,
        ``hostname``, ``concurrency``, ``beat``, ...

    Raises
    ------
    InvalidValue
        A new processor lacks ``module`` or ``gitrepo``, or a field is unknown or out of range.
    """

    def __init__(
        self, name: str, *, user: Any = None, database: Database | None = None, **fields: Any
    ) -> None:
        declaration = ProcessorDecl(name, dict(fields), user=name_of(user, "user"))
        self.processor, self.action = _apply_one(
            database, [declaration], "processor", name, _processor_row
        )
        self.name: str = name
        self.id: uuid.UUID = self.processor["id"]

    def __repr__(self) -> str:
        return f"Processor(name={self.name!r}, id={self.id})"


class Plug:
    """Create or update the plug ``name`` from ``source`` to ``target`` through ``queue``.

    ``source`` and ``target`` are socket names or objects with a ``.name``;
    ``queue`` is a name or ``{"name": ..., **queue fields}``. ``processor``,
    when given, must be the source socket's processor.

    Raises
    ------
    InvalidValue
        ``processor`` is not the source's processor, or a field is wrong.
    ObjectNotFound
        The source, target or queue does not exist.
    InvalidNetwork
        The plug closes a cycle (declare it with ``loop=True`` if meant).
    """

    def __init__(
        self,
        name: str,
        source: Any,
        target: Any,
        queue: QueueRef,
        processor: Any = None,
        user: Any = None,
        argument: str | None = None,
        type: str = "RESULT",
        loop: bool = False,
        enabled: bool | None = None,
        description: str | None = None,
        *,
        database: Database | None = None,
    ) -> None:
        queue_declaration = queue_decl(queue, f"plug {name!r}")
        fields = {"enabled": enabled, "description": description}
        declaration = PlugDecl(
            name,
            source=name_of(source, "source"),
            target=name_of(target, "target"),
            queue=queue_declaration.name,
            argument=argument,
            type=type,
            loop=loop,
            fields={k: v for k, v in fields.items() if v is not None},
            user=name_of(user, "user"),
        )
        expected = name_of(processor, "processor")

        def check(session: Session) -> None:
            source_socket = find_by_name(session, models.Socket, declaration.source or "")
            if expected is None or source_socket is None:
                return  # a missing source is reported by apply, as `flow add plug` does
            actual = source_socket.processor.name
            if expected != actual:
                raise InvalidValue(
                    f"plug {name!r}: processor {expected!r} is not the processor of its source "
                    f"socket {source_socket.name!r} ({actual!r})"
                )

        self.plug, self.action = _apply_one(
            database, [queue_declaration, declaration], "plug", name, _plug_row, check
        )
        self.name: str = name
        self.id: uuid.UUID = self.plug["id"]

    def __repr__(self) -> str:
        return f"Plug(name={self.name!r}, id={self.id})"


def upsert_socket(
    name: str,
    *,
    database: Database | None = None,
    processor: Any = None,
    queue: QueueRef | None = None,
    task: str | None = None,
    arguments: bool | Callable[..., Any] | Sequence[Any] = False,
    interval: int | None = None,
    cron: str | None = None,
    wait: bool | None = None,
    beat: bool | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    user: Any = None,
) -> dict[str, Any]:
    """Create or update the socket ``name``; return its row as a dict.

    Takes the fields of :func:`pyfi.client.decorators.socket`. ``processor``
    is a name or an object with ``.name``; ``queue`` a name or a dict with a
    ``name`` and queue fields. ``arguments`` records a signature: pass the
    function (or a sequence of
    :class:`~pyfi.network.signature.ParameterSpec`). ``beat`` is accepted and
    ignored, as by the decorator. A new socket needs ``processor``, ``queue``
    and ``task``.

    Returns
    -------
    dict
        The row's columns plus ``processor``, ``task`` and ``queue`` names, and
        ``action`` (``created``, ``updated`` or ``unchanged``).
    """
    if beat is not None and not isinstance(beat, bool):
        raise InvalidValue(f"socket {name!r}: beat must be true or false, not {beat!r}")
    fields = {"interval": interval, "cron": cron, "wait": wait}
    fields |= {"description": description, "enabled": enabled}
    declarations = socket_declarations(
        name,
        processor=processor,
        queue=queue,
        task=task,
        fields={k: v for k, v in fields.items() if v is not None},
        parameters=_parameters(name, arguments),
        user=user,
    )
    row, action = _apply_one(database, declarations, "socket", name, _socket_row)
    return {**row, "action": action}


def _parameters(name: str, arguments: Any) -> Any:
    if arguments is False or arguments is None:
        return None
    if arguments is True:
        raise InvalidValue(
            f"socket {name!r}: arguments=True needs the function; pass the function itself"
        )
    if callable(arguments):
        from pyfi.network.signature import parameters_of

        return parameters_of(arguments)
    return tuple(arguments)


def _apply_one(
    database: Database | None,
    declarations: Iterable[Declaration],
    kind: str,
    name: str,
    snapshot: Callable[[Any], dict[str, Any]],
    check: Callable[[Session], None] | None = None,
) -> tuple[dict[str, Any], str]:
    """Apply ``declarations`` in one transaction, after ``check``.

    Returns the snapshot of ``kind`` ``name`` and what applying did to it.
    """
    if database is None:
        from pyfi.client.connection import database as default_database

        database = default_database()
    with database.transaction() as session:
        if check is not None:
            check(session)
        report = apply(session, Network.of(declarations))
        row = _row(session, kind, name)
        change = next(c for c in report.changes if (c.kind, c.name) == (kind, name))
        return snapshot(row), change.action


def _row(session: Session, kind: str, name: str) -> Any:
    model = {"processor": models.Processor, "socket": models.Socket, "plug": models.Plug}[kind]
    return get_by_name(session, model, name)


def _processor_row(processor: models.Processor) -> dict[str, Any]:
    # Snapshots get printed: to_dict masks the URLs in them.
    return to_dict(processor, raw=True)


def _socket_row(socket: models.Socket) -> dict[str, Any]:
    return {
        **to_dict(socket, raw=True),
        "processor": socket.processor.name,
        "task": socket.task.name,
        "queue": socket.queue.name,
    }


def _plug_row(plug: models.Plug) -> dict[str, Any]:
    return {
        **to_dict(plug, raw=True),
        "source": plug.source.name,
        "target": plug.target.name,
        "queue": plug.queue.name,
        "argument": plug.argument.name if plug.argument is not None else None,
    }
