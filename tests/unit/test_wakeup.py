"""The consuming thread's wait, ended by another thread (pyfi.broker.wakeup)."""

from __future__ import annotations

import select
import socket
from typing import Any

from pyfi.broker.wakeup import Wakeup


def readable(wakeup: Wakeup) -> bool:
    """Whether a wait on ``wakeup`` would end at once."""
    ready, _, _ = select.select([wakeup.fileno()], [], [], 0)
    return bool(ready)


def test_a_set_while_armed_ends_the_wait_once() -> None:
    # Given an armed wakeup
    wakeup = Wakeup()
    wakeup.arm()
    # When other threads set it twice
    wakeup.set()
    wakeup.set()
    # Then a wait ends at once, and after clearing it would wait again
    assert readable(wakeup)
    wakeup.clear()
    assert not readable(wakeup)
    wakeup.close()


def test_a_set_while_disarmed_writes_nothing() -> None:
    # Given a wakeup whose thread is at work, not waiting
    wakeup = Wakeup()
    # When another thread sets it
    wakeup.set()
    # Then nothing is written: the next wait is not cut short
    assert not readable(wakeup)
    # and once armed, a set ends the wait
    wakeup.arm()
    wakeup.set()
    assert readable(wakeup)
    wakeup.close()


class _SetDuringRead:
    """The reading end of a wakeup, where another thread's set lands mid-clear."""

    def __init__(self, wakeup: Wakeup, reader: socket.socket) -> None:
        self.wakeup, self.reader, self.fired = wakeup, reader, False

    def fileno(self) -> int:
        return self.reader.fileno()

    def recv(self, size: int) -> bytes:
        if not self.fired:
            self.fired = True
            self.wakeup.set()  # the pool hands a message over while the waiter clears
        return self.reader.recv(size)

    def close(self) -> None:
        self.reader.close()


def test_a_set_during_clear_does_not_leave_later_waits_deaf() -> None:
    # Given an armed wakeup that was set, whose waiter clears it while
    # another thread sets it again
    wakeup = Wakeup()
    reader: Any = wakeup._reader
    wakeup._reader = _SetDuringRead(wakeup, reader)  # type: ignore[assignment]
    wakeup.arm()
    wakeup.set()
    wakeup.clear()
    # When the waiter waits again and another thread sets the wakeup
    wakeup.set()
    # Then that wait ends: the flag was not left up with no byte to read
    assert readable(wakeup)
    wakeup.close()
