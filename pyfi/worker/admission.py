"""The gate every message passes before a worker acts on it.

A worker reads its queues, and whoever can publish to the broker can put
anything there. :func:`Admission.admit` turns a delivery into a call only if
it is within the wire limits (:mod:`pyfi.limits`), is addressed to the socket
whose queue it came from (or to a fanout sibling sharing that queue's
exchange), and, for a composition's call, sends the flow on only to sockets
that exist in the model. Anything else raises :class:`MessageDecodeError`
with the reason the worker dead-letters it under, once: a refused message is
never run and never requeued.

Routes of a flow's later calls come from the model, not from the message: a
route on the wire could name queue arguments the broker refuses (and the
worker would re-run the call each time its publish failed) or declare queues
nobody asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pyfi.broker.topology import SocketRoute
from pyfi.errors import MessageDecodeError
from pyfi.limits import WireLimits, admit_body
from pyfi.message import Message
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.workflow.plan import check_frames, sockets_started

# Looks a socket's route up in the model: None when no socket has that name.
LoadRoute = Callable[[str], SocketRoute | None]

# How long a name the model lacks stays unknown before the model is asked
# again (a socket added meanwhile is then found), and how many are kept.
UNKNOWN_FOR_S = 5.0
MAX_UNKNOWN = 1024


class RouteBook:
    """The routes of the sockets a worker sends calls to, from the model only.

    Its own sockets and its plugs' targets are known from the spec; another
    socket (a composition's next step) is looked up once, then kept.
    """

    def __init__(self, spec: ProcessorSpec, load: LoadRoute, limits: WireLimits) -> None:
        self._load = load
        self._limits = limits
        self._known: dict[str, SocketRoute] = {}
        for socket in spec.sockets:
            self._known[socket.name] = socket.route
            for plug in socket.outgoing:
                self._known[plug.target] = plug.target_route
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()

    def route(self, socket: str) -> SocketRoute:
        """The route of ``socket`` in the model.

        Raises
        ------
        MessageDecodeError
            The model has no socket of that name.
        DatabaseUnavailable
            The model cannot be read now (the message is kept for later).
        """
        known = self._known.get(socket)
        if known is not None:
            return known
        if len(socket) > self._limits.max_name_chars:
            raise MessageDecodeError(
                f"the flow sends a call to a socket name of {len(socket)} characters"
            )
        with self._lock:
            refused_at = self._unknown.get(socket)
            if refused_at is None or time.monotonic() - refused_at > UNKNOWN_FOR_S:
                route = self._load(socket)
                if route is not None:
                    self._known[socket] = route
                    self._unknown.pop(socket, None)
                    return route
                if len(self._unknown) >= MAX_UNKNOWN:
                    self._unknown.clear()
                self._unknown[socket] = time.monotonic()
        raise MessageDecodeError(
            f"the flow sends a call to socket {socket!r:.80}, which is not in the model"
        )

    def route_of_node(self, node: dict[str, Any]) -> SocketRoute:
        """The route of a plan's call node: its socket's, whatever route the node holds."""
        return self.route(node["socket"])


class Admission:
    """Checks a worker's deliveries; one per worker, shared by its pool threads."""

    def __init__(self, limits: WireLimits, routes: RouteBook) -> None:
        self.limits = limits
        self.routes = routes

    def admit(
        self, socket: SocketSpec, body: bytes | str, headers: Mapping[str, Any] | None
    ) -> Message:
        """The call a delivery on ``socket``'s queue carries, if it may be acted on.

        Raises
        ------
        MessageDecodeError
            Why the message is refused (for its dead letter).
        DatabaseUnavailable
            A flow's next socket cannot be looked up now.
        """
        message = Message.decode(admit_body(body, headers, self.limits), self.limits)
        if message.socket != socket.name:
            if message.socket not in socket.siblings:
                raise MessageDecodeError(
                    f"the call is for socket {message.socket!r:.80}, which does not share "
                    f"the queue of {socket.name}"
                )
            return message  # a fanout copy: it runs as this socket's own call, without the flow
        if message.flow is not None:
            frames = check_frames(message.flow["frames"], self.limits.max_group_size)
            for name in sockets_started(frames):
                self.routes.route(name)
        return message


def model_routes(database_url: str) -> LoadRoute:
    """Look routes up in the model's database, opened on first use."""
    opened: list[Any] = []
    lock = threading.Lock()

    def load(socket: str) -> SocketRoute | None:
        from pyfi.db.session import Database
        from pyfi.wiring import load_route_named

        with lock:
            if not opened:
                opened.append(Database(database_url))
        with opened[0].connect() as connection:
            return load_route_named(connection, socket)

    return load
