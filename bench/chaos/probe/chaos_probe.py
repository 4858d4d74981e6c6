"""The functions the chaos suite calls: each execution is written down once.

This folder is copied into a git repository of its own and deployed by an
agent like any processor (module ``chaos_probe``). Every function appends
one line, ``<token> <pid>``, to a ledger file named by the caller, with
``O_APPEND``: a single ``write`` of a short line under ``O_APPEND`` is never
interleaved with another process's, so the ledger counts executions exactly,
even when workers are killed, without Redis or a database (whose outages the
suite stages). A token written twice is a duplicated side effect; the pid says
which worker ran it, so a duplicate can be blamed on a worker that was killed.
"""

from __future__ import annotations

import os
import time


def _write_down(token: str, ledger: str) -> None:
    line = f"{token} {os.getpid()}\n".encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def touch(token: str, ledger: str, busy_ms: float = 0) -> str:
    """Write the call down, work a little if asked (so a kill lands mid-call), return the token."""
    _write_down(token, ledger)
    if busy_ms:
        time.sleep(busy_ms / 1000)
    return token


def exit_now(token: str, ledger: str) -> None:
    """Write the call down, then raise SystemExit: a failure like any other, or a worker killer."""
    _write_down(token, ledger)
    raise SystemExit(3)
