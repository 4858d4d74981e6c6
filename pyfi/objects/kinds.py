"""The kinds of object users manage by name, and how their fields are set.

A :class:`Kind` says which model backs a kind, which fields are required,
which fields hold enum values, and how a field given as a *name* (a socket's
``queue``, a plug's ``source``) is turned into the object it refers to. The
CLI and the Python object API both go through these specs, so a reference is
resolved, and fails, the same way wherever it comes from.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from pyfi.auth.tokens import revoke_all
from pyfi.db import models
from pyfi.db.enums import Misfire, PlugType, QueueType, RequestedStatus, Strategy
from pyfi.errors import InvalidValue
from pyfi.objects.lookup import argument_for, get_by_name, task_for
from pyfi.objects.validate import check_cron, check_input, check_timezone
from pyfi.passwords import hash_password
from pyfi.trust import check_module_name, check_task_name

Resolver = Callable[[Session, Any, Any], None]
Finisher = Callable[[Session, Any], None]


@dataclass(frozen=True)
class Kind:
    """How one kind of object is created, changed and shown."""

    name: str
    plural: str
    model: type[Any]
    required: tuple[str, ...] = ("name",)
    enums: Mapping[str, type[enum.Enum]] = field(default_factory=dict)
    # Fields given by name (or needing a transformation), applied in this order.
    resolvers: Mapping[str, Resolver] = field(default_factory=dict)
    # Runs after every field is set, to keep derived references consistent.
    finish: Finisher | None = None
    # Runs after the object is flushed, when the whole model can be queried
    # with it in place (e.g. a plug checked against the network's cycles).
    check: Finisher | None = None


def _queue(session: Session, obj: Any, name: str) -> None:
    obj.queue = get_by_name(session, models.Queue, name)


def _processor(session: Session, obj: Any, name: str) -> None:
    obj.processor = get_by_name(session, models.Processor, name)


def _module(_session: Session, obj: models.Processor, name: str) -> None:
    # A cheap name check at once; the agent decides when it sees the checkout.
    obj.module = check_module_name(name)


def _task(session: Session, obj: models.Socket, name: str) -> None:
    obj.task = task_for(session, obj.processor, check_task_name(name))


def _source(session: Session, obj: models.Plug, name: str) -> None:
    obj.source = get_by_name(session, models.Socket, name, role="source socket")


def _target(session: Session, obj: models.Plug, name: str) -> None:
    obj.target = get_by_name(session, models.Socket, name, role="target socket")


def _argument(session: Session, obj: models.Plug, name: str) -> None:
    obj.argument = argument_for(session, obj.target.task, name) if name else None


def _password(session: Session, obj: models.User, password: str) -> None:
    obj.password_hash = hash_password(password)
    if obj.id is not None:  # the logins the old password opened end with it
        revoke_all(session, obj.id)


def _enabled(session: Session, obj: models.User, enabled: bool) -> None:
    obj.enabled = enabled
    if not enabled and obj.id is not None:  # a disabled user's logins end at once
        revoke_all(session, obj.id)


def _cron(_session: Session, obj: models.Socket, expression: str) -> None:
    obj.cron = check_cron(expression) if expression else None


def _timezone(_session: Session, obj: models.Socket, name: str) -> None:
    # "UTC" is stored as NULL: the default, spelled once.
    obj.timezone = check_timezone(name) if name and name != "UTC" else None


def _input(_session: Session, obj: models.Socket, text: str) -> None:
    obj.input = check_input(text) if text else None


def _finish_socket(session: Session, socket: models.Socket) -> None:
    # A socket moved to another processor keeps its function name there.
    if socket.task.processor is not socket.processor:
        socket.task = task_for(session, socket.processor, socket.task.name)
    if socket.interval is not None and socket.cron is not None:
        raise InvalidValue("a socket is scheduled by --interval or by --cron, not both")


def _finish_plug(session: Session, plug: models.Plug) -> None:
    # A plug re-pointed at another target binds the same argument name there.
    if plug.argument is not None and plug.argument.task is not plug.target.task:
        plug.argument = argument_for(session, plug.target.task, plug.argument.name)


def _check_plug(session: Session, plug: models.Plug) -> None:
    # Imported here: the network package builds on the object API, not the reverse.
    from pyfi.network.validate import check_plug

    check_plug(session, plug)


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("queue", "queues", models.Queue, enums={"type": QueueType}),
        Kind(
            "processor",
            "processors",
            models.Processor,
            required=("name", "module", "gitrepo"),
            enums={"requested_status": RequestedStatus},
            resolvers={"module": _module},
        ),
        Kind(
            "socket",
            "sockets",
            models.Socket,
            required=("name", "queue", "processor", "task"),
            enums={"misfire": Misfire},
            resolvers={
                "queue": _queue,
                "processor": _processor,
                "task": _task,
                "cron": _cron,
                "timezone": _timezone,
                "input": _input,
            },
            finish=_finish_socket,
        ),
        Kind(
            "plug",
            "plugs",
            models.Plug,
            required=("name", "queue", "source", "target"),
            enums={"type": PlugType},
            resolvers={
                "queue": _queue,
                "source": _source,
                "target": _target,
                "argument": _argument,
            },
            finish=_finish_plug,
            check=_check_plug,
        ),
        Kind("node", "nodes", models.Node, required=("name", "hostname")),
        Kind(
            "user",
            "users",
            models.User,
            required=("name", "email", "password"),
            resolvers={"password": _password, "enabled": _enabled},
        ),
        Kind("role", "roles", models.Role),
        Kind("scheduler", "schedulers", models.Scheduler, enums={"strategy": Strategy}),
    )
}


def kind_named(name: str) -> Kind:
    """The :class:`Kind` called ``name``."""
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidValue(f"unknown kind {name!r}; choose one of: {', '.join(KINDS)}") from None
