"""Time limits: calls of a processor with a ``timelimit`` run in child processes, killed at it.

A thread cannot be stopped from outside: nothing in Python interrupts a
function sleeping in C, or spinning in a C extension that holds the GIL. A
process can be killed. So a worker whose processor has a time limit runs
its calls in child processes (:mod:`pyfi.worker.child`), one per pool
thread, started with the worker, each running one call at a time:

* the child imports the processor's module once, the way the worker does;
* the worker writes the call as one JSON line to the child and waits for
  one JSON line back, at most the time limit;
* at the limit it kills the child's process group (SIGKILL) and starts
  another: the call fails with :class:`~pyfi.errors.TimeLimitExceeded`,
  retried or dead-lettered by the processor's policy like any failure;
* a child that dies during a call (a segfault, ``os._exit``) fails it with
  :class:`~pyfi.errors.CallProcessDied`, and is replaced the same way.

Calls of a processor without a time limit never come here: they run in the
pool's threads, at no cost.

Why a plain subprocess speaking JSON lines rather than ``multiprocessing``:

* ``fork`` copies a process whose other threads may hold locks (logging's,
  kombu's, the allocator's) that no thread will ever release in the copy;
  a worker always has threads;
* ``spawn`` and ``forkserver`` avoid that but pickle the process object and
  its arguments, and their pools do not survive a killed child
  (``ProcessPoolExecutor`` breaks for every later call, ``Pool`` loses the
  task);
* :mod:`subprocess` forks and execs in C, with no Python code in between;
  its pipes carry only JSON; a kill is one signal to a process group of its
  own (which takes what the function started, and keeps a Ctrl-C at the
  worker's terminal from killing calls the worker would finish).

The cost per call is two pipe writes, two reads and a JSON encoding of the
arguments and of the result each way; each child is one more interpreter
with the processor's module imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import select
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from pyfi.errors import CallProcessDied, FlowError, TimeLimitExceeded
from pyfi.wiring import ProcessorSpec, spec_to_json
from pyfi.worker.child import decode_reply
from pyfi.worker.executor import Outcome, describe

log = logging.getLogger("pyfi.worker")

# How long a new child may take to start and import the processor's module
# (some modules take seconds); not counted against a call's time limit.
CHILD_START_TIMEOUT_S = 120.0
# How long close() gives an idle child to exit once its input closes.
CLOSE_GRACE_S = 1.0
# How long a child whose pipe closed is given to finish exiting, so that its
# own exit status (a signal, a code) is the one reported, not our kill.
EXIT_GRACE_S = 1.0
_READ_SIZE = 1 << 16


def for_processor(spec: ProcessorSpec, path: Path | None, *, size: int) -> TimeLimitedCalls | None:
    """Child processes for ``spec``'s calls when it has a time limit; None when it has none."""
    if spec.timelimit_s is None:
        return None
    return TimeLimitedCalls(spec, path, size=size, limit_s=spec.timelimit_s)


class TimeLimitedCalls:
    """Runs one processor's calls in ``size`` child processes, each call for at most ``limit_s``.

    :meth:`execute` is the worker's entry point: it may be called from
    ``size`` threads at once, each using a child of its own.
    """

    def __init__(
        self, spec: ProcessorSpec, path: Path | None, *, size: int, limit_s: float
    ) -> None:
        self.processor = spec.name
        self.limit_s = limit_s
        hello = {"spec": spec_to_json(spec), "path": str(path) if path else None}
        greeting = json.dumps({**hello, "sys_path": sys.path}).encode() + b"\n"
        self._children = [_Child(greeting) for _ in range(max(1, size))]
        self._idle: queue.SimpleQueue[_Child] = queue.SimpleQueue()
        for child in self._children:
            self._idle.put(child)
        # Children are never left behind, even by a worker that is not closed.
        self._close = weakref.finalize(self, _close_all, self._children)

    def execute(self, socket: str, args: list[Any], kwargs: dict[str, Any]) -> Outcome:
        """Run the call in a child; at the time limit or if the child dies, a failure outcome."""
        request = json.dumps({"socket": socket, "args": args, "kwargs": kwargs}).encode() + b"\n"
        what = f"the call of {socket} (processor {self.processor})"
        child = self._idle.get()
        try:
            return decode_reply(child.call(request, self.limit_s, what))
        except (TimeLimitExceeded, CallProcessDied) as exc:
            log.warning("%s", exc)
            return _failure(exc)
        except ValueError as exc:  # not our reply: the child's state is unknown
            child.replace()
            return _failure(CallProcessDied(f"the process running {what} replied {exc}"))
        finally:
            self._idle.put(child)

    def close(self) -> None:
        """Stop every child (idle ones exit at once, the others are killed)."""
        self._close()


class _Child:
    """One child process of the pool, replaced whenever it is killed or dies."""

    def __init__(self, greeting: bytes) -> None:
        self._greeting = greeting
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._buffer = bytearray()
        self._poller = select.poll()
        self._start()

    def call(self, request: bytes, limit_s: float, what: str) -> bytes:
        """Send ``request``; the child's reply line.

        Raises
        ------
        TimeLimitExceeded
            No reply within ``limit_s``: the child was killed and replaced.
        CallProcessDied
            The child could not start, or died before it replied; replaced.
        """
        if self._process is None or self._process.poll() is not None:
            self.replace()  # gone while idle: the call has not begun, nothing is lost
        if not self._ready:
            self._wait_until_ready(what)
        process = self._process
        assert process is not None
        assert process.stdin is not None
        try:
            process.stdin.write(request)
            process.stdin.flush()
        except OSError as exc:
            raise self._died(what, f"could not be sent the call ({exc})") from None
        line = self._read_line(time.monotonic() + limit_s)
        if line is None:
            pid = process.pid
            self.replace()
            raise TimeLimitExceeded(
                f"{what} ran past its time limit of {limit_s:g}s; its process {pid} was killed"
            )
        if not line:
            raise self._died(what, "died before it answered")
        return line

    def replace(self) -> None:
        """Kill this child (and whatever it started) and start another."""
        self._discard()
        self._start()

    def close(self) -> None:
        """Close the child's input, so that an idle child exits; kill it if it does not."""
        process = self._process
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(CLOSE_GRACE_S)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._discard()

    def _start(self) -> None:
        self._process = None
        self._ready = False
        self._buffer.clear()
        process = subprocess.Popen(
            [sys.executable, "-m", "pyfi.worker.child", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._poller = select.poll()
        self._poller.register(process.stdout.fileno(), select.POLLIN)
        try:
            process.stdin.write(self._greeting)
            process.stdin.flush()
        except OSError:
            pass  # it died at once: the call waiting for it says so

    def _wait_until_ready(self, what: str) -> None:
        line = self._read_line(time.monotonic() + CHILD_START_TIMEOUT_S)
        if line is None:
            self.replace()
            raise CallProcessDied(
                f"the process for {what} did not start within {CHILD_START_TIMEOUT_S:g}s"
            )
        if not line:
            raise self._died(what, "died while it started (see the worker's log)")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = {"error": "it sent an unreadable greeting"}
        if not isinstance(answer, dict) or answer.get("ready") is not True:
            error = answer.get("error") if isinstance(answer, dict) else None
            self.replace()
            raise CallProcessDied(f"the process for {what} could not start: {error}")
        self._ready = True

    def _died(self, what: str, how: str) -> CallProcessDied:
        """The error for a child that ended by itself, which is replaced."""
        process = self._process
        status = None
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = process.wait(EXIT_GRACE_S)
        self.replace()
        return CallProcessDied(f"the process running {what} {how}: {_exit_cause(status)}")

    def _read_line(self, deadline: float) -> bytes | None:
        """The child's next line (without its newline); b"" when it closed; None at ``deadline``."""
        process = self._process
        assert process is not None
        assert process.stdout is not None
        fd = process.stdout.fileno()
        scanned = 0
        while (end := self._buffer.find(b"\n", scanned)) < 0:
            scanned = len(self._buffer)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._poller.poll(math.ceil(remaining * 1000)):
                continue
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                return b""
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def _discard(self) -> None:
        """Kill the child's process group and reap the child."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pipe in (process.stdin, process.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


def _close_all(children: list[_Child]) -> None:
    for child in children:
        child.close()


def _failure(exc: FlowError) -> Outcome:
    """A failed outcome for ``exc``, without our own frames as its traceback."""
    return Outcome(ok=False, error=describe(exc.with_traceback(None)))


def _exit_cause(status: int | None) -> str:
    if status is None:
        return "it did not exit, and was killed"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"
