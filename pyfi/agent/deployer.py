"""Deploy processors in the background, one at a time per processor, each failure its own.

A deploy clones with git (up to 10 minutes) and builds a virtualenv with pip
(up to 30). Run inside the agent's reconcile loop, that would stop its
heartbeats, and other agents would take its shares over and run more workers
than a processor's ``concurrency``. So the loop asks :meth:`Deployer.state`
and gets an answer at once: deployed, still deploying, or failed; the deploy
itself runs on a thread of its own, and the loop keeps heartbeating (which
keeps the share held) and keeps serving the other processors meanwhile.

Whatever a deploy raises, not only :class:`~pyfi.errors.FlowError` (a missing
git binary, a full disk, a pip timeout, a bug), becomes the *processor's*
failure with a one-line reason, retried with a backoff of its own; it never
reaches the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pyfi.errors import CodeNotAllowed, FlowError, RepoNotAllowed, first_line

log = logging.getLogger("pyfi.agent")

# Waits before deploying a failed processor again, by failures in a row.
RETRY_BACKOFF_S = (5.0, 15.0, 60.0, 300.0)
# Deploys running at once (each may run git or pip).
MAX_PARALLEL = 2

T = TypeVar("T")
# What decides a deploy's outcome: (gitrepo, branch, commit, requirements, module, tasks).
Key = tuple[str, str, str | None, str | None, str, tuple[str, ...]]


@dataclass(frozen=True)
class Deploying:
    """The deploy runs (or waits for a free thread)."""


@dataclass(frozen=True)
class Deployed(Generic[T]):
    """The processor's code is ready."""

    result: T


@dataclass(frozen=True)
class Failed:
    """The last deploy failed; it is tried again after ``retry_in_s``."""

    reason: str
    refused: bool  # the host does not trust it: a refusal, not a fault
    retry_in_s: float


@dataclass
class _Job(Generic[T]):
    key: Key
    thread: threading.Thread | None = None
    result: T | None = None
    reason: str | None = None
    refused: bool = False
    failures: int = 0
    retry_at: float = 0.0


def failure_reason(exc: BaseException) -> str:
    """One line saying why a deploy failed: pyfi's own message, else the exception's."""
    if isinstance(exc, FlowError):
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


class Deployer(Generic[T]):
    """Runs ``deploy(name, key)`` for processors, off the caller's thread."""

    def __init__(
        self, deploy: Callable[[str, Key], T], *, max_parallel: int = MAX_PARALLEL
    ) -> None:
        self._deploy = deploy
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job[T]] = {}

    def state(self, name: str, key: Key) -> Deployed[T] | Deploying | Failed:
        """Where the deploy of ``name`` at ``key`` stands; starts it when due."""
        now = time.monotonic()
        with self._lock:
            job = self._jobs.get(name)
            if job is not None and job.thread is not None:
                return Deploying()  # one deploy of a processor at a time
            if job is not None and job.key == key:
                if job.result is not None:
                    return Deployed(job.result)
                if job.reason is not None and now < job.retry_at:
                    return Failed(job.reason, job.refused, job.retry_at - now)
            if job is None or job.key != key:
                job = self._jobs[name] = _Job(key)
            job.thread = threading.Thread(
                target=self._run, args=(name, job), name=f"pyfi-deploy-{name}", daemon=True
            )
            job.thread.start()
            return Deploying()

    def forget(self, names: set[str]) -> None:
        """Drop what is known of processors no longer placed here (running deploys finish)."""
        with self._lock:
            for name in list(self._jobs):
                if name not in names and self._jobs[name].thread is None:
                    del self._jobs[name]

    def deploying(self) -> list[str]:
        """Processors whose deploy is running now."""
        with self._lock:
            return sorted(name for name, job in self._jobs.items() if job.thread is not None)

    def _run(self, name: str, job: _Job[T]) -> None:
        result: T | None = None
        reason: str | None = None
        refused = False
        with self._slots:
            try:
                result = self._deploy(name, job.key)
            except Exception as exc:  # any failure is the processor's, never the agent's
                reason, refused = (
                    failure_reason(exc),
                    isinstance(exc, RepoNotAllowed | CodeNotAllowed),
                )
                if not isinstance(exc, FlowError):
                    log.debug("deploy of %s raised", name, exc_info=True)
        with self._lock:
            job.thread = None
            job.result, job.reason, job.refused = result, reason, refused
            if reason is None:
                job.failures = 0
                return
            delay = RETRY_BACKOFF_S[min(job.failures, len(RETRY_BACKOFF_S) - 1)]
            job.failures += 1
            job.retry_at = time.monotonic() + delay
        log.warning(
            "cannot deploy %s: %s (failure %d in a row; next try in %.0fs)",
            name,
            reason,
            job.failures,
            delay,
        )
