"""Socket functions for time-limit tests: ones that take too long, in Python or in C, or die.

Those that leave a trace write the pid of the process that ran them to a
file in the folder named by PYFI_PROBE_DIR, so a test can tell which process
ran a call and whether it is still alive.
"""

from __future__ import annotations

import ctypes
import os
import time
import uuid
from pathlib import Path
from typing import Any


def _trace_pid(kind: str) -> None:
    folder = Path(os.environ["PYFI_PROBE_DIR"]) / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / uuid.uuid4().hex).write_text(str(os.getpid()))


def where(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """What arrived, and the pid of the process that ran the call."""
    return {"args": list(args), "kwargs": kwargs, "pid": os.getpid()}


def nap(seconds: float) -> float:
    """Sleep in Python's time.sleep (in C, the GIL released), leaving the pid first."""
    _trace_pid("nap")
    time.sleep(seconds)
    return seconds


def hold_the_gil(seconds: int) -> int:
    """Sleep in C through ctypes.PyDLL, which keeps the GIL: no other thread runs meanwhile."""
    _trace_pid("hold_the_gil")
    ctypes.PyDLL(None).sleep(seconds)
    return seconds


def exit_at_once(status: int) -> None:
    """End the process without unwinding (no exception, no cleanup)."""
    os._exit(status)


def segfault() -> None:
    """Read address 0: the process dies of SIGSEGV."""
    ctypes.string_at(0)


def unsendable() -> set[int]:
    """A result JSON cannot carry."""
    return {1, 2}
