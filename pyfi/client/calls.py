"""Send a call to a socket and wait for its outcome.

This is the plumbing under `flow task run` and the Python API: it reads a
socket's route from the meta-model once, publishes calls with publisher
confirms, and waits on the result backend (no polling of the broker).
:meth:`Client.call` publishes without a confirm and waits for the result,
which makes one redundant.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pyfi.auth.actor import ActorKind
from pyfi.auth.guard import Target, require
from pyfi.backend import open_backend
from pyfi.broker import Broker, SocketRoute
from pyfi.broker.confirms import PendingConfirms, lost_broker
from pyfi.config import Settings
from pyfi.db.enums import Right
from pyfi.db.session import Database
from pyfi.errors import BrokerUnavailable, CallFailed, CallTimeout
from pyfi.message import Message, new_id
from pyfi.outcome import decode_outcome
from pyfi.resources import Closeable
from pyfi.wiring import load_route
from pyfi.workflow.engine import NO_INPUT, FlowDriver

if TYPE_CHECKING:
    from pyfi.auth.token_store import FoundToken

# How long Client.call waits for a result before it checks what the broker
# sent back (a returned call; with confirm, the confirm): a call that cannot
# get through fails fast instead of at its timeout.
CONFIRM_GRACE_S = 1.0
# Client.results fetches this many outcomes first, then twice as many as the
# last fetch found (never fewer than MIN_FETCH).
FIRST_FETCH = 1000
MIN_FETCH = 64


class Client(Closeable):
    """A connection to a pyfi network: database (for routes), broker and backend."""

    def __init__(
        self,
        settings: Settings,
        database: Database | None = None,
        *,
        login: FoundToken | None = None,
    ) -> None:
        """``login``: a token whose user the client's own database acts as (``flow login``)."""
        self.settings = settings
        self._login = login
        self._database = database
        self._owns_database = database is None
        self._routes: dict[str, SocketRoute] = {}
        self._broker: Broker | None = None
        self._backend: Any = None

    @property
    def database(self) -> Database:
        if self._database is None:
            database = Database(self.settings.database_url)
            if self._login is not None:
                from pyfi.auth.identify import use_token

                use_token(database, self._login)
            self._database = database
        return self._database

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = Broker(self.settings.broker_url)
        return self._broker

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = open_backend(self.settings.backend_url)
        return self._backend

    def route(self, socket: str) -> SocketRoute:
        """The route of ``socket``, read from the meta-model once per client."""
        if socket not in self._routes:
            with self.database.transaction() as session:
                self._routes[socket] = load_route(session, socket)
        return self._routes[socket]

    def _check_run(self, socket: str | None) -> None:
        """Refuse a user without RUN_TASK, in a transaction of its own, before publishing.

        The administrator and services pass without touching the database,
        so the mesh's own calls cost nothing more.
        """
        if self.database.actor.kind is not ActorKind.USER:
            return
        with self.database.transaction() as session:
            target = Target("socket", socket) if socket else None
            require(session, Right.RUN_TASK, "run tasks", target)

    def send(
        self,
        socket: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        tracking_id: str | None = None,
        parent_id: str | None = None,
        idempotency_key: str | None = None,
        call_id: str | None = None,
    ) -> Message:
        """Publish a call; returns once the broker has confirmed it.

        ``call_id`` names the call (a new id by default); the scheduler passes
        the id derived from a socket's scheduled instant.

        Raises
        ------
        Forbidden
            The acting user lacks ``RUN_TASK`` (checked before each publish).
        """
        self._check_run(socket)
        message = Message.new(
            socket,
            args,
            kwargs,
            tracking_id=tracking_id,
            parent_id=parent_id,
            idempotency_key=idempotency_key,
            call_id=call_id,
        )
        self.broker.publish(message, self.route(socket))
        return message

    def call(
        self,
        socket: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        timeout_s: float,
        tracking_id: str | None = None,
        idempotency_key: str | None = None,
        confirm: bool = False,
    ) -> Any:
        """Send a call and return its value: :meth:`send` then :meth:`result`, sooner.

        The call's result, not the broker's confirm, ends the wait: a stored
        result proves the broker delivered the call. By default the call is
        published without confirm mode at all (:meth:`Broker.publish_awaited`):
        RabbitMQ's confirm of a persistent message is a synced write to disk,
        which roughly doubled the broker's CPU per call. A call no queue
        takes (its queue deleted) is returned by the broker and raises after
        :data:`CONFIRM_GRACE_S`; a call a queue *refuses* (a policy that
        rejects publishes when the queue is full) is dropped by the broker
        unannounced and ends in :class:`CallTimeout`.

        With ``confirm`` the call is published in confirm mode and, when no
        result has come after :data:`CONFIRM_GRACE_S`, the confirm is awaited
        (within ``timeout_s``), so that a refused call raises then instead of
        at the timeout. ``flow task run`` calls this way.

        Raises
        ------
        CallFailed
            The function raised; the remote type, message and traceback are kept.
        CallTimeout
            No outcome within ``timeout_s``.
        BrokerUnavailable
            The broker returned, refused (with ``confirm``) or lost the call,
            or the connection was lost, and no result came.
        """
        message = Message.new(
            socket, args, kwargs, tracking_id=tracking_id, idempotency_key=idempotency_key
        )
        self._check_run(socket)
        deadline = time.monotonic() + timeout_s
        route = self.route(socket)
        pending = None
        if confirm:
            pending = self.broker.publish_unconfirmed(message, route)
        else:
            self.broker.publish_awaited(message, route)
        # Whatever happens below, an unread confirm stays with the broker,
        # which reads it before it publishes again.
        stored = self.backend.wait(message.call_id, min(timeout_s, CONFIRM_GRACE_S))
        if stored is None:
            if pending is None:
                self._check_not_returned(message)
            else:
                self._check_confirmed(pending, message, deadline, timeout_s)
            remaining = deadline - time.monotonic()
            if remaining > 0:
                stored = self.backend.wait(message.call_id, remaining)
        self.broker.collect_confirms()  # this call's or earlier ones', if they have come
        if stored is None:
            if pending is None:
                self._check_not_returned(message)  # a return that came late says more
            raise CallTimeout(message.call_id, timeout_s)
        return unwrap(stored, message.call_id)

    def _check_not_returned(self, message: Message) -> None:
        """Raise if the broker returned ``message`` as unroutable (or the connection is lost)."""
        if self.broker.returned(message.call_id):
            raise BrokerUnavailable(
                f"the message broker returned call {message.call_id}: no queue of socket "
                f"{message.socket!r} takes it (deleted meanwhile?); call again to declare it"
            )

    def _check_confirmed(
        self, pending: PendingConfirms, message: Message, deadline: float, timeout_s: float
    ) -> None:
        """Wait for the call's confirm (within the deadline); raise if it was refused or lost."""
        try:  # what has come is read even when the time is up
            if not pending.collect():
                pending.wait(max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise CallTimeout(message.call_id, timeout_s) from None
        except self.broker.connection.connection_errors as exc:
            raise lost_broker(self.broker.url, exc) from exc
        pending.settle()  # every confirm is in: raises if the broker refused the call

    def send_many(
        self,
        socket: str,
        calls: Iterable[tuple[list[Any], dict[str, Any]]],
        *,
        tracking_id: str | None = None,
    ) -> list[Message]:
        """Publish many calls of one socket; returns once the broker has confirmed all.

        Confirms are awaited in windows rather than one by one (see
        :meth:`Broker.publish_many`); each call is its own flow run unless
        ``tracking_id`` groups them.
        """
        self._check_run(socket)
        route = self.route(socket)
        messages = [
            Message.new(socket, args, kwargs, tracking_id=tracking_id) for args, kwargs in calls
        ]
        self.broker.publish_many((message, route) for message in messages)
        return messages

    def start_flow(self, plan: dict[str, Any], value: Any = NO_INPUT) -> str:
        """Publish the first calls of a composition's plan; returns the run's tracking id.

        The workers take the flow on from there; its outcome is stored under
        the returned id.
        """
        self._check_run(None)
        tracking_id = new_id()
        FlowDriver(self.backend, self.broker.publish, self.broker.publish_many).begin(
            plan, tracking_id, value
        )
        return tracking_id

    def result(self, call_id: str, timeout_s: float) -> Any:
        """The value of a call, waiting up to ``timeout_s`` seconds.

        Raises
        ------
        CallFailed
            The function raised; the remote type, message and traceback are kept.
        CallTimeout
            No outcome within ``timeout_s``.
        """
        stored = self.backend.wait(call_id, timeout_s)
        if stored is None:
            raise CallTimeout(call_id, timeout_s)
        return unwrap(stored, call_id)

    def results(self, call_ids: Sequence[str], timeout_s: float) -> list[Any]:
        """The values of many calls, in order, all within ``timeout_s`` seconds.

        Outcomes already stored are fetched together (one round trip per
        thousand on Redis); the wait blocks on the first missing one, then
        fetches what arrived meanwhile. Fetching 10,000 results costs a few
        dozen round trips instead of 10,000.

        Raises
        ------
        CallFailed
            One of the calls failed: the first failure in ``call_ids`` order,
            once every outcome is in.
        CallTimeout
            Some outcome was still missing at ``timeout_s`` (the error names one).
        """
        deadline = time.monotonic() + timeout_s
        stored: dict[str, str] = {}
        missing = list(dict.fromkeys(call_ids))
        window = FIRST_FETCH
        while missing:
            # Outcomes arrive roughly in the order the calls were sent, so only
            # the oldest missing ones are fetched: asking again for thousands
            # not stored yet, after each wait, cost more than the results did.
            chunk, rest = missing[:window], missing[window:]
            still: list[str] = []
            for call_id, value in zip(chunk, self.backend.get_many(chunk), strict=True):
                if value is None:
                    still.append(call_id)
                else:
                    stored[call_id] = value
            missing = still + rest
            # What arrived while we waited predicts what the next fetch finds.
            window = max(MIN_FETCH, 2 * (len(chunk) - len(still)))
            if not still:
                continue
            remaining = deadline - time.monotonic()
            value = self.backend.wait(missing[0], remaining) if remaining > 0 else None
            if value is None:
                raise CallTimeout(missing[0], timeout_s)
            stored[missing.pop(0)] = value
        return [unwrap(stored[call_id], call_id) for call_id in call_ids]

    def close(self) -> None:
        """Release the broker, backend and (if owned) database connections."""
        if self._broker is not None:
            self._broker.close()
        if self._backend is not None:
            self._backend.close()
        if self._owns_database and self._database is not None:
            self._database.dispose()


def unwrap(stored: str, call_id: str) -> Any:
    """The value of a stored outcome, or the remote failure raised as :class:`CallFailed`."""
    outcome = decode_outcome(stored)
    if outcome.ok:
        return outcome.value
    error = outcome.error or {}
    raise CallFailed(
        str(error.get("type", "Exception")),
        str(error.get("message", "")),
        error.get("traceback"),
        # A flow's failure names the step that failed.
        call_id=str(error.get("call_id") or call_id),
    )
