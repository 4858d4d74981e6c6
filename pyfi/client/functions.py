"""Socket functions: call a socket like a Python function, or take its partial.

``Socket(name=...)`` names an existing socket; calling it sends one call and
returns a :class:`~pyfi.client.results.Result`. ``socket.p(...)`` binds some
arguments without sending anything: the :class:`Signature` it returns is a
step of a ``pipeline``, ``parallel`` or ``funnel``, which supplies the rest
(the previous step's result) when the flow reaches it, on a worker.

Given more than a name (``processor=``, ``task=``, ``queue=`` ...), ``Socket``
creates or updates the socket row first, as the object API does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pyfi.client.connection import or_default
from pyfi.client.results import Result
from pyfi.errors import InvalidValue
from pyfi.workflow.engine import NO_INPUT
from pyfi.workflow.plan import CALL, route_to_json

# How long Socket.call waits for a value; Client.call takes any timeout.
CALL_TIMEOUT_S = 3600.0

if TYPE_CHECKING:
    from pyfi.client.calls import Client
    from pyfi.db.session import Database


@dataclass(frozen=True)
class Signature:
    """One socket call with some arguments bound: a step of a composition.

    When the flow reaches it, the value flowing in (the previous step's
    result; for a funnel's callback, the list of the branches' results) is
    appended to the bound positional arguments, as :func:`functools.partial`
    would, unless :meth:`into` names a keyword for it or :meth:`immutable`
    drops it.
    """

    socket: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_to: str | bool | None = None  # None: append; a name: that keyword; False: drop
    client: Client | None = field(default=None, compare=False, repr=False)

    def into(self, argument: str) -> Signature:
        """The same step, receiving its input as the keyword ``argument``."""
        if not argument.isidentifier():
            raise InvalidValue(f"{argument!r} is not a Python argument name")
        return replace(self, input_to=argument)

    def immutable(self) -> Signature:
        """The same step, run with its bound arguments only (the input is dropped)."""
        return replace(self, input_to=False)

    def __call__(self, *value: Any) -> Result:
        """Send this one call now, with ``value`` (if given) as its input."""
        args = list(self.args)
        kwargs = dict(self.kwargs)
        if len(value) > 1:
            raise InvalidValue("a partial takes at most one input value")
        if value and self.input_to is not False:
            if self.input_to:
                kwargs[str(self.input_to)] = value[0]
            else:
                args.append(value[0])
        client = or_default(self.client)
        return Result(client.send(self.socket, args, kwargs).call_id, client=client)

    def plan(self, node_id: str, client: Client) -> dict[str, Any]:
        """This step as a plan node (see :mod:`pyfi.workflow.plan`)."""
        return {
            "kind": CALL,
            "id": node_id,
            "socket": self.socket,
            "route": route_to_json(client.route(self.socket)),
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "into": self.input_to,
        }

    def run(self, value: Any = NO_INPUT, *, client: Client | None = None) -> Result:
        """Like calling it, with an explicit client."""
        step = replace(self, client=client) if client is not None else self
        return step() if value is NO_INPUT else step(value)


class Socket:
    """A socket function: ``Socket(name="...")("x").get()``.

    ``Socket as Function`` reads well in scripts, as the reference does.
    """

    def __init__(
        self,
        name: str,
        *,
        client: Client | None = None,
        database: Database | None = None,
        **fields: Any,
    ) -> None:
        self.name = name
        self._client = client
        self._row: dict[str, Any] | None = None
        if fields:
            from pyfi.client.objects import upsert_socket

            db = database or (client.database if client is not None else None)
            self._row = upsert_socket(name, database=db, **fields)

    @property
    def client(self) -> Client:
        return or_default(self._client)

    @property
    def socket(self) -> dict[str, Any]:
        """The socket's row as a plain dictionary (read on first use)."""
        if self._row is None:
            from pyfi.auth.guard import Target, require
            from pyfi.db import models
            from pyfi.db.enums import Right
            from pyfi.db.serialize import to_dict
            from pyfi.objects.lookup import get_by_name

            with self.client.database.transaction() as session:
                require(session, Right.READ_SOCKET, "read sockets", Target("socket", self.name))
                self._row = to_dict(get_by_name(session, models.Socket, self.name))
        return self._row

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        """Send one call; returns at once with a handle on its result."""
        client = self.client
        return Result(client.send(self.name, list(args), kwargs).call_id, client=client)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Send one call and return its value (waiting up to :data:`CALL_TIMEOUT_S`).

        ``socket.call(x)`` is ``socket(x).get(...)`` without the broker's
        confirm: the result proves the delivery (see :meth:`Client.call`,
        and its ``confirm`` for a queue that may refuse calls). Raises what
        :meth:`Result.get` raises, and :class:`~pyfi.errors.BrokerUnavailable`
        when the broker returned the call (its queue is gone).
        """
        return self.client.call(self.name, list(args), kwargs, timeout_s=CALL_TIMEOUT_S)

    def map(self, values: Iterable[Any]) -> list[Result]:
        """One call per value (its only argument), sent together; a handle per call.

        Much faster than calling in a loop for many calls: the broker's
        confirms are awaited in windows, not one by one.
        """
        return self.starmap((value,) for value in values)

    def starmap(self, arguments: Iterable[Sequence[Any]]) -> list[Result]:
        """One call per tuple of positional arguments, sent together."""
        client = self.client
        sent = client.send_many(self.name, ((list(args), {}) for args in arguments))
        return [Result(message.call_id, client=client) for message in sent]

    async def acall(self, *args: Any, **kwargs: Any) -> Result:
        """:meth:`__call__` for asyncio code (publishing runs in a thread)."""
        return await asyncio.to_thread(self.__call__, *args, **kwargs)

    def partial(self, *args: Any, **kwargs: Any) -> Signature:
        """A step for compositions, with these arguments bound; nothing is sent."""
        return Signature(self.name, tuple(args), dict(kwargs), client=self._client)

    @property
    def p(self) -> Any:
        """``socket.p(...)``: the partial signature used inside compositions."""
        return self.partial

    def __repr__(self) -> str:
        return f"Socket({self.name!r})"
