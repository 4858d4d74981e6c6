"""The runtime view of the meta-model: routes, sockets and plugs as plain values.

Workers and clients read the database once (at start, or when the model
changes) and then work from these frozen values, so the per-message path
never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from pyfi.broker.topology import SocketRoute, queue_arguments
from pyfi.db import models
from pyfi.db.enums import PlugType
from pyfi.objects.lookup import get_by_name


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


@dataclass(frozen=True)
class ProcessorSpec:
    """What a worker needs to know about its processor."""

    name: str
    module: str
    retries: int
    retry_delay_s: int
    sockets: tuple[SocketSpec, ...]


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
    return route_of(get_by_name(session, models.Socket, socket_name))


def _socket_options() -> list[object]:
    return [
        selectinload(models.Socket.queue),
        selectinload(models.Socket.task),
        selectinload(models.Socket.incoming).selectinload(models.Plug.argument),
        selectinload(models.Socket.outgoing).selectinload(models.Plug.argument),
        selectinload(models.Socket.outgoing)
        .selectinload(models.Plug.target)
        .selectinload(models.Socket.queue),
    ]


def socket_spec(socket: models.Socket) -> SocketSpec:
    """The runtime view of one socket."""
    joined = sorted({p.argument.name for p in socket.incoming if p.argument and p.enabled})
    outgoing = tuple(
        PlugSpec(
            name=plug.name,
            type=plug.type,
            target=plug.target.name,
            target_route=route_of(plug.target),
            argument=plug.argument.name if plug.argument else None,
        )
        for plug in socket.outgoing
        if plug.enabled
    )
    return SocketSpec(
        name=socket.name,
        id=str(socket.id),
        task=socket.task.name,
        queue=socket.queue.name,
        route=route_of(socket),
        wait=socket.wait,
        join_arguments=tuple(joined),
        outgoing=outgoing,
    )


def load_processor(session: Session, name: str) -> ProcessorSpec:
    """The runtime view of a processor and every enabled socket it hosts."""
    processor = get_by_name(session, models.Processor, name)
    sockets = session.scalars(
        select(models.Socket)
        .where(models.Socket.processor_id == processor.id, models.Socket.enabled.is_(True))
        .options(*_socket_options())  # type: ignore[arg-type]
        .order_by(models.Socket.name)
    )
    return ProcessorSpec(
        name=processor.name,
        module=processor.module,
        retries=processor.retries,
        retry_delay_s=processor.retry_delay,
        sockets=tuple(socket_spec(s) for s in sockets),
    )
