"""The contract every result backend keeps, and the checks they share.

A result backend holds two kinds of short-lived state for workers:

* call outcomes, keyed by call id, which a client fetches or waits for;
* joins: the argument values delivered so far to a ``wait`` socket for one
  tracking id, until every plug bound to one of its arguments has delivered.

Outcomes are opaque strings (the worker JSON-encodes them), so backends never
depend on the message format. Everything expires, because a client that never
asks for its result, or a flow that never completes a join, must not leak.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pyfi.errors import InvalidValue
from pyfi.resources import Closeable

# How long outcomes and unfinished joins are kept unless a worker is told otherwise.
DEFAULT_RESULT_TTL_S = 24 * 3600
DEFAULT_JOIN_TTL_S = 3600


class ResultBackend(Closeable, ABC):
    """Call outcomes and join state, shared by every worker and client of a mesh.

    Implementations are safe to use from several threads at once, and several
    processes may open the same backend URL at the same time.
    """

    @abstractmethod
    def store(self, call_id: str, outcome: str, ttl_s: int) -> None:
        """Keep the outcome of a call, replacing any earlier one, and wake its waiters.

        Parameters
        ----------
        call_id:
            The call's id (a UUID string).
        outcome:
            The JSON-encoded outcome; the backend stores it verbatim.
        ttl_s:
            Seconds after which the outcome is forgotten (at least 1).

        Raises
        ------
        InvalidValue
            If ``ttl_s`` is below 1.
        BackendError
            If the backend fails (:class:`BackendUnavailable` if unreachable).
        """

    def store_many(self, items: Sequence[tuple[str, str, int]]) -> None:
        """Store several outcomes, ``(call_id, outcome, ttl_s)`` each, as :meth:`store` would.

        A backend that can send them together (Redis: one pipelined round
        trip) overrides this; the outcomes are independent, so a failure may
        leave some of them stored and the caller must store them all again.

        Raises
        ------
        InvalidValue
            If a ``ttl_s`` is below 1 (nothing is stored).
        BackendError
            If the backend fails (:class:`BackendUnavailable` if unreachable).
        """
        for _, _, ttl_s in items:
            check_ttl(ttl_s)
        for call_id, outcome, ttl_s in items:
            self.store(call_id, outcome, ttl_s)

    @abstractmethod
    def get(self, call_id: str) -> str | None:
        """The stored outcome of a call.

        Returns
        -------
        str | None
            The outcome as stored, or ``None`` if unknown or expired.

        Raises
        ------
        BackendError
            If the backend fails.
        """

    def get_many(self, call_ids: Sequence[str]) -> list[str | None]:
        """The stored outcomes of many calls, in order (``None`` where there is none yet).

        Backends that can answer in one round trip override this.

        Raises
        ------
        BackendError
            If the backend fails.
        """
        return [self.get(call_id) for call_id in call_ids]

    @abstractmethod
    def wait(self, call_id: str, timeout_s: float) -> str | None:
        """Block until the outcome of a call is stored, or ``timeout_s`` has passed.

        Any number of waiters, in any process, may wait for the same call, and a
        waiter that starts after the outcome was stored returns at once.

        Returns
        -------
        str | None
            The outcome, or ``None`` on timeout.

        Raises
        ------
        BackendError
            If the backend fails.
        """

    @abstractmethod
    def join(
        self,
        tracking_id: str,
        socket: str,
        argument: str,
        value: str,
        expected: Sequence[str],
        claimant: str,
        ttl_s: int,
    ) -> dict[str, str] | None:
        """Record one argument of a ``wait`` socket's join and say whether it fires.

        The join of ``(tracking_id, socket)`` fires once every name in
        ``expected`` has a value. The first delivery that completes it claims
        it for ``claimant``; from then on its values are frozen, the same
        claimant (a redelivered message, after a crash) is answered with them
        again, and every other claimant gets ``None``. This runs atomically
        across processes, so exactly one deliverer fires each join.

        Parameters
        ----------
        tracking_id:
            The flow run the value belongs to; joins of different runs never mix.
        socket:
            The name of the socket that waits.
        argument:
            The argument this delivery fills; one of ``expected``.
        value:
            The JSON-encoded argument value, stored verbatim.
        expected:
            Every argument name the socket waits for.
        claimant:
            Who delivers: the id of the message carrying the value.
        ttl_s:
            Seconds after the latest delivery at which an unfinished join is
            forgotten (at least 1).

        Returns
        -------
        dict[str, str] | None
            ``{argument: value}`` for every expected argument if this delivery
            may fire the socket, else ``None``.

        Raises
        ------
        InvalidValue
            If ``argument`` is not in ``expected`` or ``ttl_s`` is below 1.
        BackendError
            If the backend fails.
        """

    @abstractmethod
    def complete_join(self, tracking_id: str, socket: str) -> None:
        """Forget a join, once the message its firing produced has been published.

        Raises
        ------
        BackendError
            If the backend fails.
        """

    @abstractmethod
    def close(self) -> None:
        """Release connections; the object must not be used afterwards."""


def check_ttl(ttl_s: int) -> None:
    """Refuse lifetimes a backend cannot honour (Redis rejects ``EX 0``)."""
    if ttl_s < 1:
        raise InvalidValue(f"a result backend TTL must be at least 1 second, not {ttl_s}")


def check_join(argument: str, expected: Sequence[str], ttl_s: int) -> None:
    """Refuse a delivery the join could never use."""
    check_ttl(ttl_s)
    if argument not in expected:
        raise InvalidValue(
            f"argument {argument!r} is not one the join waits for ({', '.join(expected)})"
        )
