"""The runtime view of the meta-model: routes, sockets and plugs as plain values.

Workers and clients read the database once (at start, or when the model
changes) and then work from these frozen values, so the per-message path
never touches the database.

Importing this module loads no database code: the worker's modules need
only the values, and the loaders import what they use when they run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pyfi.broker.topology import SocketRoute, queue_arguments
from pyfi.db.enums import PlugType, QueueType
from pyfi.workflow.plan import route_from_json

if TYPE_CHECKING:
    from sqlalchemy import Connection, FromClause
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import KeyedColumnElement

    from pyfi.db import models


@dataclass(frozen=True)
class PlugSpec:
    """An outgoing edge of a socket, with everything needed to deliver along it."""

    name: str
    type: PlugType
    target: str
    target_route: SocketRoute
    argument: str | None


@dataclass(frozen=True)
class SocketSpec:
    """One socket a worker serves."""

    name: str
    id: str
    task: str
    queue: str
    route: SocketRoute
    wait: bool
    # Arguments that incoming plugs deliver: what a waiting socket joins on.
    join_arguments: tuple[str, ...]
    outgoing: tuple[PlugSpec, ...]
    # The other sockets of a fanout queue object: a call for one of them is
    # copied into this socket's queue too, and runs here as this socket's own.
    # A call naming any other socket is refused.
    siblings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcessorSpec:
    """What a worker needs to know about its processor."""

    name: str
    module: str
    retries: int
    retry_delay_s: int
    sockets: tuple[SocketSpec, ...]
    # Calls run at once unless the worker is told otherwise.
    concurrency: int = 1
    # Seconds a call may run; None: no limit. With a limit, calls run in
    # child processes that are killed at it (see pyfi.worker.timelimit).
    timelimit_s: int | None = None


# Bumped when the JSON form of a spec changes incompatibly.
SPEC_FORMAT = 1


def spec_to_json(spec: ProcessorSpec) -> str:
    """``spec`` as JSON, for an agent to hand a worker it starts.

    The agent has just read the model; a worker given this reads nothing
    before it consumes, so it starts without loading any database code.
    """
    return json.dumps({"format": SPEC_FORMAT, "spec": asdict(spec)}, separators=(",", ":"))


def spec_from_json(text: str) -> ProcessorSpec:
    """The spec :func:`spec_to_json` wrote.

    Raises
    ------
    InvalidValue
        ``text`` is not such a spec, or one of another format.
    """
    from pyfi.errors import InvalidValue, MessageDecodeError

    try:
        document = json.loads(text)
        if document.get("format") != SPEC_FORMAT:
            raise InvalidValue(
                f"processor spec format {document.get('format')!r}; this pyfi reads "
                f"format {SPEC_FORMAT}: start the worker with --processor instead"
            )
        raw = document["spec"]
        return ProcessorSpec(
            name=raw["name"],
            module=raw["module"],
            retries=int(raw["retries"]),
            retry_delay_s=int(raw["retry_delay_s"]),
            concurrency=int(raw["concurrency"]),
            # Absent from the JSON of an agent that predates time limits.
            timelimit_s=_timelimit(raw.get("timelimit_s")),
            sockets=tuple(_socket_from(item) for item in raw["sockets"]),
        )
    except InvalidValue:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, MessageDecodeError) as exc:
        raise InvalidValue(f"not a processor spec: {type(exc).__name__}: {exc}") from exc


def _timelimit(raw: Any) -> int | None:
    """A time limit read from a spec: None, or a whole number of seconds of at least 1."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"timelimit_s must be a whole number of seconds >= 1, not {raw!r}")
    return raw


def _socket_from(raw: dict[str, Any]) -> SocketSpec:
    return SocketSpec(
        name=raw["name"],
        id=raw["id"],
        task=raw["task"],
        queue=raw["queue"],
        route=route_from_json(raw["route"]),
        wait=bool(raw["wait"]),
        join_arguments=tuple(raw["join_arguments"]),
        siblings=tuple(str(name) for name in raw.get("siblings", ())),
        outgoing=tuple(
            PlugSpec(
                name=plug["name"],
                type=PlugType(plug["type"]),
                target=plug["target"],
                target_route=route_from_json(plug["target_route"]),
                argument=plug["argument"],
            )
            for plug in raw["outgoing"]
        ),
    )


def route_of(socket: models.Socket) -> SocketRoute:
    """The broker route of a socket, from its queue object."""
    queue = socket.queue
    return SocketRoute(
        socket=socket.name,
        exchange=queue.name,
        exchange_type=queue.type.value,
        durable=queue.durable,
        arguments=queue_arguments(
            max_length=queue.max_length,
            max_length_bytes=queue.max_length_bytes,
            message_ttl=queue.message_ttl,
            expires=queue.expires,
        ),
    )


def load_route(session: Session, socket_name: str) -> SocketRoute:
    """The route of the socket called ``socket_name``."""
    from pyfi.db import models
    from pyfi.objects.lookup import get_by_name

    return route_of(get_by_name(session, models.Socket, socket_name))


def load_processor(connection: Connection | Session, name: str) -> ProcessorSpec:
    """The runtime view of a processor and every enabled socket it hosts.

    Plain selects, no ORM objects: a starting worker waits on this, and
    loading the same rows as objects (mapper set-up, one query per
    relationship) took several times as long.

    Raises
    ------
    ProcessorNotFound
        No processor is called ``name``.
    """
    from sqlalchemy import select

    from pyfi.errors import ProcessorNotFound

    processors, sockets, tasks, queues, plugs, arguments = _tables()
    processor = connection.execute(
        select(
            processors.c.id,
            processors.c.name,
            processors.c.module,
            processors.c.retries,
            processors.c.retry_delay,
            processors.c.concurrency,
            processors.c.timelimit,
        ).where(processors.c.name == name)
    ).one_or_none()
    if processor is None:
        raise ProcessorNotFound(name, "see `flow ls processors` for the existing ones")

    rows = connection.execute(
        select(sockets.c.id, sockets.c.name, sockets.c.wait, tasks.c.name, *_queue_columns(queues))
        .join_from(sockets, tasks, sockets.c.task_id == tasks.c.id)
        .join(queues, sockets.c.queue_id == queues.c.id)
        .where(sockets.c.processor_id == processor.id, sockets.c.enabled.is_(True))
        .order_by(sockets.c.name)
    ).all()

    source, target, target_queue = sockets.alias("source"), sockets.alias("target"), queues.alias()
    outgoing: dict[Any, list[PlugSpec]] = {}
    for plug in connection.execute(
        select(
            plugs.c.source_id,
            plugs.c.name,
            plugs.c.type,
            arguments.c.name,
            target.c.name,
            *_queue_columns(target_queue),
        )
        .join_from(plugs, source, plugs.c.source_id == source.c.id)
        .join(target, plugs.c.target_id == target.c.id)
        .join(target_queue, target.c.queue_id == target_queue.c.id)
        .outerjoin(arguments, plugs.c.argument_id == arguments.c.id)
        .where(
            source.c.processor_id == processor.id,
            source.c.enabled.is_(True),
            plugs.c.enabled.is_(True),
        )
        .order_by(plugs.c.name)
    ):
        source_id, plug_name, plug_type, argument, target_name, *queue = plug
        outgoing.setdefault(source_id, []).append(
            PlugSpec(
                name=plug_name,
                type=PlugType(plug_type),
                target=target_name,
                target_route=_route(target_name, queue),
                argument=argument,
            )
        )

    joined: dict[Any, set[str]] = {}
    for target_id, argument in connection.execute(
        select(plugs.c.target_id, arguments.c.name)
        .join_from(plugs, target, plugs.c.target_id == target.c.id)
        .join(arguments, plugs.c.argument_id == arguments.c.id)
        .where(
            target.c.processor_id == processor.id,
            target.c.enabled.is_(True),
            plugs.c.enabled.is_(True),
        )
    ):
        joined.setdefault(target_id, set()).add(argument)

    siblings = _fanout_siblings(connection, [row[0] for row in rows])

    return ProcessorSpec(
        name=processor.name,
        module=processor.module,
        retries=processor.retries,
        retry_delay_s=processor.retry_delay,
        concurrency=processor.concurrency,
        timelimit_s=processor.timelimit,
        sockets=tuple(
            SocketSpec(
                name=socket_name,
                id=str(socket_id),
                task=task,
                queue=queue[0],
                route=_route(socket_name, queue),
                wait=wait,
                join_arguments=tuple(sorted(joined.get(socket_id, ()))),
                outgoing=tuple(outgoing.get(socket_id, ())),
                siblings=siblings.get(socket_id, ()),
            )
            for socket_id, socket_name, wait, task, *queue in rows
        ),
    )


def _fanout_siblings(
    connection: Connection | Session, socket_ids: Sequence[Any]
) -> dict[Any, tuple[str, ...]]:
    """For each of these sockets on a fanout queue object, the other sockets on it.

    Every socket of such a queue object has its queue bound to the one
    exchange, so a call published for any of them reaches them all.
    """
    from sqlalchemy import select

    _, sockets, _, queues, _, _ = _tables()
    mine, other = sockets.alias("mine"), sockets.alias("other")
    found: dict[Any, list[str]] = {}
    for socket_id, sibling in connection.execute(
        select(mine.c.id, other.c.name)
        .join_from(mine, queues, mine.c.queue_id == queues.c.id)
        .join(other, other.c.queue_id == queues.c.id)
        .where(
            mine.c.id.in_(socket_ids),
            other.c.id != mine.c.id,
            queues.c.type == QueueType.FANOUT,
        )
        .order_by(other.c.name)
    ):
        found.setdefault(socket_id, []).append(sibling)
    return {socket_id: tuple(names) for socket_id, names in found.items()}


def load_route_named(connection: Connection | Session, socket_name: str) -> SocketRoute | None:
    """The route of the socket called ``socket_name``, or None if the model has none.

    Plain selects, as :func:`load_processor`: a worker asks this on its
    per-message path (once per socket) when a flow sends a call onward.
    """
    from sqlalchemy import select

    _, sockets, _, queues, _, _ = _tables()
    row = connection.execute(
        select(*_queue_columns(queues))
        .join_from(sockets, queues, sockets.c.queue_id == queues.c.id)
        .where(sockets.c.name == socket_name)
    ).one_or_none()
    return None if row is None else _route(socket_name, row)


def _tables() -> tuple[FromClause, ...]:
    from pyfi.db import models

    return (
        models.Processor.__table__,
        models.Socket.__table__,
        models.Task.__table__,
        models.Queue.__table__,
        models.Plug.__table__,
        models.Argument.__table__,
    )


def _queue_columns(queues: FromClause) -> list[KeyedColumnElement[Any]]:
    """The columns of a queue row that :func:`_route` reads, in its order."""
    c = queues.c
    return [c.name, c.type, c.durable, c.max_length, c.max_length_bytes, c.message_ttl, c.expires]


def _route(socket: str, queue: Sequence[Any]) -> SocketRoute:
    name, exchange_type, durable, max_length, max_length_bytes, message_ttl, expires = queue
    return SocketRoute(
        socket=socket,
        exchange=name,
        exchange_type=QueueType(exchange_type).value,
        durable=durable,
        arguments=queue_arguments(
            max_length=max_length,
            max_length_bytes=max_length_bytes,
            message_ttl=message_ttl,
            expires=expires,
        ),
    )
