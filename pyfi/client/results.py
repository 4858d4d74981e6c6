"""A handle on the outcome of a call or of a whole flow, by id.

The handle holds nothing but the id and a connection: a program that
started a flow may exit, and another one (or the same, later) builds
``Result(id)`` and gets the value, because workers store every outcome in
the result backend under that id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Iterable
from typing import Any

from pyfi.client.calls import Client, unwrap
from pyfi.client.connection import or_default
from pyfi.errors import CallTimeout

# Waiting "forever" is done in slices, so a Ctrl-C or a dead backend is noticed.
WAIT_SLICE_S = 30.0


class Result:
    """The outcome of one call (its call id) or one flow run (its tracking id)."""

    def __init__(self, id: str, *, client: Client | None = None) -> None:
        self.id = id
        self._client = client

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = or_default(None)
        return self._client

    def ready(self) -> bool:
        """True once the outcome (a value or a failure) is stored."""
        return self.client.backend.get(self.id) is not None

    def get(self, timeout: float | None = None) -> Any:
        """The value, waiting up to ``timeout`` seconds (``None``: as long as it takes).

        Raises
        ------
        CallFailed
            The function (or, for a flow, one of its steps) raised: the remote
            exception's type, message and traceback are on the error
            (``error_type``, ``remote_message``, ``traceback``) and ``call_id``
            names the call that failed.
        CallTimeout
            No outcome within ``timeout``; the call or flow may still finish.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
            stored = self.client.backend.wait(self.id, max(min(remaining, WAIT_SLICE_S), 0.0))
            if stored is not None:
                return unwrap(stored, self.id)
            if deadline is not None and time.monotonic() >= deadline:
                raise CallTimeout(self.id, float(timeout or 0))

    async def aget(self, timeout: float | None = None) -> Any:
        """:meth:`get` for asyncio code: the wait runs in a thread, the loop stays free."""
        return await asyncio.to_thread(self.get, timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        """``await result`` is ``await result.aget()``."""
        return self.aget().__await__()

    def __repr__(self) -> str:
        return f"Result({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Result) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def gather(results: Iterable[Result], timeout: float | None = None) -> list[Any]:
    """The values of many results, in order: ``[r.get() for r in results]``, in bulk.

    What is already stored is fetched together (see :meth:`Client.results`),
    so gathering thousands of results from ``Socket.map`` costs a few round
    trips, not one each. ``timeout`` bounds the whole wait (``None``: as long
    as it takes).

    Raises
    ------
    CallFailed
        The first failed call in ``results`` order, once every outcome is in.
    CallTimeout
        Some outcome was still missing at ``timeout``.
    """
    handles = list(results)
    if not handles:
        return []
    client = handles[0].client
    ids = [handle.id for handle in handles]
    if timeout is not None:
        return client.results(ids, timeout)
    while True:  # in slices, so a Ctrl-C or a dead backend is noticed
        try:
            return client.results(ids, WAIT_SLICE_S)
        except CallTimeout:
            continue
