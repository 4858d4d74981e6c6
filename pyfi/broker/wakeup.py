"""Ending a consuming thread's wait for the broker when other threads have work for it.

A worker's consuming thread waits on the broker's socket and, between two
waits, acknowledges what the pool has finished. Under load every message
that arrives ends a wait, but once the prefetch window is spent the broker
sends nothing until acknowledgements come: the thread then waited out its
whole timeout with finished messages in hand, and RabbitMQ with nothing to
deliver. Measured under 10,000 fire-and-forget calls, each worker's
consuming thread sat in such waits for 60 % of the run. With a
:class:`Wakeup`, the wait is on the socket *and* on a socket pair that the
pool writes to when it hands a message over.

Only a wait can be interrupted, so a byte is written only while the
consuming thread is about to wait or waiting (:meth:`Wakeup.arm`), and at
most once per wait: under load, when the thread is rarely waiting, handing
a message over costs no system call.
"""

from __future__ import annotations

import contextlib
import socket


class Wakeup:
    """A wait another thread can end; :meth:`fileno` is for ``select``.

    Every method is called without a lock: the flags are plain attributes,
    which the interpreter reads and writes whole. A byte written that no
    wait needed (a race between :meth:`set` and :meth:`disarm`) only makes
    the next wait return at once.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._armed = False
        self._signalled = False

    def fileno(self) -> int:
        """The descriptor that becomes readable when :meth:`set` ends a wait."""
        return self._reader.fileno()

    def arm(self) -> None:
        """The waiting thread is about to check for work and then wait."""
        self._armed = True

    def disarm(self) -> None:
        """The waiting thread is back at work: :meth:`set` need not write."""
        self._armed = False

    def set(self) -> None:
        """End the current wait, if there is one (called by the other threads)."""
        if self._armed and not self._signalled:
            self._signalled = True
            with contextlib.suppress(BlockingIOError):  # a full pair is readable already
                self._writer.send(b"\0")

    def clear(self) -> None:
        """Take what :meth:`set` wrote (called by the waiting thread once woken).

        The byte is read before the flag is lowered: the other way round, a
        :meth:`set` in between would write a byte this read takes, and leave
        the flag up with nothing to wake the next wait (every later set
        would then write nothing). This way a set in between writes nothing,
        and the woken thread, about to look for work anyway, finds it.
        """
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(4096):
                pass
        self._signalled = False

    def close(self) -> None:
        """Release the socket pair."""
        self._reader.close()
        self._writer.close()
