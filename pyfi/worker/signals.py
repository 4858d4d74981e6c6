"""The signals a worker process obeys (stop, pause, resume) from its first moments.

An agent pauses a processor's workers with SIGUSR1 and resumes them with
SIGUSR2, whose default action is to end the process. A worker still
starting (importing, reading its spec, connecting) had no handler yet, so a
pause sent then killed it. :class:`LifecycleSignals` is installed first
thing by ``flow worker start``: it remembers what was asked until the
worker exists, then passes every request on to it. A spawner can close the
last gap, before the interpreter runs at all, with :func:`held_for_spawn`:
the child starts with these signals blocked, so they wait, pending, until
:meth:`LifecycleSignals.install` unblocks them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

PAUSE = signal.SIGUSR1
RESUME = signal.SIGUSR2
STOP = (signal.SIGTERM, signal.SIGINT)
LIFECYCLE = (*STOP, PAUSE, RESUME)


class Controllable(Protocol):
    """What the signals act on: a worker."""

    def stop(self, *_: Any) -> None: ...

    def pause(self, *_: Any) -> None: ...

    def resume(self, *_: Any) -> None: ...


@contextmanager
def held_for_spawn() -> Iterator[None]:
    """Block the lifecycle signals in this thread while a worker process is spawned.

    A child inherits its parent's signal mask across ``exec``: a pause sent
    to it before its handler exists is then held, not fatal, and delivered
    once ``flow worker start`` installs :class:`LifecycleSignals`. Signals
    sent to this process meanwhile wait the few microseconds until the block ends.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, LIFECYCLE)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class LifecycleSignals:
    """Stop, pause and resume requests, remembered until a worker takes them over."""

    def __init__(self) -> None:
        self.stop_signal: int | None = None
        self.paused = False
        self._worker: Controllable | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle the lifecycle signals from now on (main thread only), and unblock them.

        Signals held back by :func:`held_for_spawn` are delivered as soon as
        they are unblocked, to these handlers.
        """
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may (a command run in-process by a test)
        for signum in LIFECYCLE:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, LIFECYCLE)

    def hand_over(self, worker: Controllable) -> None:
        """Pass what was asked so far, and every later request, on to ``worker``."""
        self._worker = worker
        if self.paused:
            worker.pause()
        if self.stop_signal is not None:
            worker.stop(self.stop_signal, None)

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced (for a process that goes on)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        worker = self._worker
        if signum == PAUSE:
            self.paused = True
            if worker is not None:
                worker.pause(signum, frame)
        elif signum == RESUME:
            self.paused = False
            if worker is not None:
                worker.resume(signum, frame)
        else:
            self.stop_signal = signum
            if worker is not None:
                worker.stop(signum, frame)
