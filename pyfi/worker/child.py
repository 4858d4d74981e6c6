"""The child process that runs a worker's time-limited calls (see :mod:`pyfi.worker.timelimit`).

Started as ``python -m pyfi.worker.child WORKER_PID``. It speaks JSON lines
on pipes that the worker holds, nothing else crosses (never a pickle):

* first the worker sends ``{"spec": ..., "path": ..., "sys_path": [...]}``:
  the child imports the processor's module once, the way the worker does
  (:func:`pyfi.worker.registry.resolve`), and answers ``{"ready": true}``, or
  ``{"ready": false, "error": "..."}`` and exits;
* then, for each call, ``{"socket": ..., "args": [...], "kwargs": {...}}``
  in, the outcome (:func:`encode_reply`) out, one call at a time, until its
  input closes.

The pipes are moved off file descriptors 0 and 1 before any user code runs:
what a function prints goes to the worker's log (stderr) and cannot corrupt
a reply, and ``input()`` reads nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, BinaryIO

from pyfi.errors import first_line
from pyfi.wiring import spec_from_json
from pyfi.worker import registry
from pyfi.worker.executor import Outcome, describe, execute

# prctl(2) option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def encode_reply(outcome: Outcome) -> bytes:
    """One call's outcome as the JSON line the child sends back."""
    reply = {
        "ok": outcome.ok,
        "value": outcome.value,
        "error": outcome.error,
        "retry_delay_s": outcome.retry_delay_s,
    }
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def decode_reply(line: bytes) -> Outcome:
    """The outcome a child sent back.

    Raises
    ------
    ValueError
        ``line`` is not a reply of the shape :func:`encode_reply` writes.
    """
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"something that is not JSON ({exc})") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ValueError("something other than a JSON object with a boolean 'ok'")
    if reply["ok"]:
        return Outcome(ok=True, value=reply.get("value"))
    error, delay = reply.get("error"), reply.get("retry_delay_s")
    if not isinstance(error, dict):
        raise ValueError("a failure without its error as an object")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)):
        raise ValueError("a retry delay that is not a number")
    return Outcome(ok=False, error=error, retry_delay_s=delay)


def main(argv: list[str]) -> int:
    """Serve calls until the worker closes the pipe; the exit status."""
    _die_with(int(argv[0]))
    requests, replies = _take_protocol_pipes()
    hello = json.loads(requests.readline() or b"{}")
    sys.path[:] = hello.get("sys_path") or sys.path
    try:
        spec = spec_from_json(hello["spec"])
        path = hello.get("path")
        functions = registry.resolve(spec, Path(path) if path else None)
    except Exception as exc:  # any failure of the module's import: report it, then stop
        _send(replies, {"ready": False, "error": first_line(exc)})
        return 1
    _send(replies, {"ready": True})
    for line in requests:
        try:
            request = json.loads(line)
            function = functions[request["socket"]]
            outcome = execute(function, request["args"], request["kwargs"])
        except (ValueError, KeyError, TypeError) as exc:  # a request the worker garbled
            outcome = Outcome(ok=False, error=describe(exc))
        replies.write(encode_reply(outcome))
        replies.flush()
    return 0


def _die_with(worker_pid: int) -> None:
    """Have the kernel kill this process when the worker dies, even mid-call in C code.

    Without it, a worker killed with SIGKILL would leave a child stuck in a
    call running for good. Linux only (prctl); elsewhere an idle child still
    exits when its input closes. The kernel sends the signal when the
    *thread* that started the child ends: the worker starts its children
    from the thread that builds it and from its pool threads, which both
    last until the children are closed.
    """
    if sys.platform.startswith("linux"):
        import ctypes  # here: the worker imports this module too, and needs no ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != worker_pid:  # the worker died before the request was made
        os._exit(1)


def _take_protocol_pipes() -> tuple[BinaryIO, BinaryIO]:
    """The pipes to the worker, moved off stdin and stdout (see the module doc)."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.close(nothing)
    os.dup2(2, 1)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    return requests, replies


def _send(replies: BinaryIO, document: dict[str, Any]) -> None:
    replies.write(json.dumps(document).encode() + b"\n")
    replies.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
