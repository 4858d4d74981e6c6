"""Storing the pool's results together: one round trip for whatever finished meanwhile.

A worker stores every call's outcome before it acknowledges the call's
message. One store per call cost each pool thread a round trip to the result
backend, and redis-py's client side of a command cost more CPU than the call
itself. Here a pool thread hands its outcome over and goes on to its next
message; the outcome is stored with the others that finished meanwhile
(:meth:`pyfi.backend.ResultBackend.store_many`), and only then does the
job's ``done`` callback run, which reports the call finished and lets its
message be acknowledged. Ack-late holds: no message is acknowledged before its
outcome is stored.

No thread of its own: the first thread to hand an outcome over while nothing
is being stored stores it at once, together with whatever other threads hand
over while it works, until nothing is left (flat combining). An idle worker
therefore stores a lone result with no hand-off between threads, and a busy
one stores in batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from pyfi.backend.base import ResultBackend

log = logging.getLogger("pyfi.worker")

# The most outcomes stored in one round trip.
MAX_BATCH = 256

# Told the fate of one stored outcome: None once stored, else why it may not be.
Done = Callable[[BaseException | None], None]


class _Job:
    __slots__ = ("call_id", "done", "outcome", "ttl_s")

    def __init__(self, call_id: str, outcome: str, ttl_s: int, done: Done) -> None:
        self.call_id = call_id
        self.outcome = outcome
        self.ttl_s = ttl_s
        self.done = done


class ResultStorer:
    """Stores outcomes handed over by many threads, in batches, then runs their callbacks."""

    def __init__(
        self, backend: ResultBackend, *, max_batch: int = MAX_BATCH, backoff_s: float = 1.0
    ) -> None:
        self._backend = backend
        self._backoff_s = backoff_s
        self._max_batch = max_batch
        self._jobs: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._storing = False

    def submit(self, call_id: str, outcome: str, ttl_s: int, done: Done) -> None:
        """Have ``outcome`` stored; ``done`` runs once it is, or once it failed.

        ``done`` may run in this thread before ``submit`` returns, or in
        another pool thread later; it must not raise (if it does, the error
        is logged and the other callbacks still run).
        """
        with self._lock:
            self._jobs.append(_Job(call_id, outcome, ttl_s, done))
            if self._storing:
                return  # the storing thread takes it on its next round
            self._storing = True
        self._store_all()

    def _store_all(self) -> None:
        finished = False
        try:
            while batch := self._take():
                try:
                    self._backend.store_many([(j.call_id, j.outcome, j.ttl_s) for j in batch])
                except Exception as exc:  # every caller decides: each requeues its message
                    error: BaseException | None = exc
                    # A failing backend is given a moment before the messages
                    # go back to be run again; outcomes handed over meanwhile
                    # wait for the next round instead of failing at once.
                    time.sleep(self._backoff_s)
                else:
                    error = None
                for job in batch:
                    try:
                        job.done(error)
                    except Exception:
                        log.exception("a stored result's callback failed")
            finished = True
        finally:
            if not finished:  # a BaseException left the loop: the next submitter takes over
                with self._lock:
                    self._storing = False

    def _take(self) -> list[_Job]:
        with self._lock:
            if not self._jobs:
                self._storing = False
                return []
            count = min(len(self._jobs), self._max_batch)
            return [self._jobs.popleft() for _ in range(count)]

    def flush(self) -> None:
        """Store what is left over (a thread stopped while storing); returns when done."""
        with self._lock:
            if self._storing or not self._jobs:
                return
            self._storing = True
        self._store_all()

    def pending(self) -> int:
        """Outcomes handed over and not yet taken to be stored."""
        with self._lock:
            return len(self._jobs)
