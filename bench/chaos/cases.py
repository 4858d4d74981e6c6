"""The chaos cases: each deploys the probe under an agent, does harm, and counts.

Every case runs in services of its own (see :mod:`bench.chaos.stack`), sends
calls of ``chaos.touch`` through the suite's own client, and at the end
reads three independent records: the outcomes stored in the result backend
(what a caller sees), the probe's ledger (what really ran, and where), and the
dead-letter queues. Every wait has a deadline taken from the size, so a case
that hangs ends, reports what it saw and cleans up.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.chaos import hostile
from bench.chaos.network import (
    EXIT,
    SAMPLE_S,
    TOUCH,
    WORKERS,
    Agent,
    Ledger,
    Watch,
    declare,
    environment_for_client,
)
from bench.chaos.report import REPLACEMENT_TARGET_S, SLOWDOWN_TARGET, CaseResult, count_reasons
from bench.chaos.stack import Stack, open_stack
from pyfi.backend import open_backend
from pyfi.client.calls import Client
from pyfi.config import load_settings
from pyfi.dlq import list_dead_letters

POLL_S = 0.25
RESTAFF_S = 30.0  # how long the agent is given, at the end, to have all its workers again
BATCH = 50
HOSTILE_MEMORY_LIMIT = 4 << 30  # address space of the agent and its workers in the flood
LOG_BYTES_PER_HOSTILE = 16 << 10  # a dead letter may log a traceback; a loop logs far more
SYSTEM_EXIT_RUNS = 4  # a function raising SystemExit may be retried, not re-run forever
# Hostile kinds a worker may legitimately run once: their harm is in what follows.
MAY_RUN_ONCE = ("hostile-route", "system-exit")


@dataclass(frozen=True)
class Size:
    """How hard a run pushes: calls per phase, faults, and every deadline."""

    name: str
    calls: int
    kill_calls: int  # per phase of the kill case
    kills: int
    db_outage_s: float
    outage_s: float  # broker and Redis
    flood_rounds: int  # hostile messages of each kind
    oversized: int  # bytes of padding in the oversized message
    bomb: int  # bytes the bz2 bomb decompresses into
    settle_s: float  # how long the worker log is watched after the flood
    deadline_s: float  # how long outcomes are awaited after the last call was sent
    busy_ms: float  # work per call, so that a kill lands mid-call


SIZES = {
    "small": Size("small", 300, 500, 3, 6, 4, 1, 2 << 20, 64 << 20, 5, 30, 2),
    "medium": Size("medium", 2000, 3000, 10, 30, 15, 2, 8 << 20, 256 << 20, 15, 180, 2),
    "full": Size("full", 10000, 10000, 10, 30, 30, 5, 12 << 20, 1 << 30, 30, 600, 2),
}


@dataclass
class Run:
    """What the cases of one run share: its folder, size and probe repository."""

    size: Size
    folder: Path
    venv_cache: Path
    repo_url: str


@dataclass
class Net:
    """A deployed probe: services, agent, client and ledger of one case."""

    stack: Stack
    agent: Agent
    client: Client
    ledger: Ledger
    busy_ms: float

    def send(self, prefix: str, count: int, start: int = 0) -> dict[str, str]:
        """Send ``count`` calls; token -> call id."""
        calls = [
            ([f"{prefix}-{i}", str(self.ledger.path)], {"busy_ms": self.busy_ms})
            for i in range(start, start + count)
        ]
        messages = self.client.send_many(TOUCH, calls)
        return {str(m.args[0]): m.call_id for m in messages}

    def wait_full_strength(self, deadline: float) -> None:
        """Until the agent runs all its workers again (or ``deadline``)."""
        while len(self.agent.watch.alive()) < WORKERS and time.monotonic() < deadline:
            if not self.agent.alive:
                return
            time.sleep(0.1)
        time.sleep(2 * SAMPLE_S)  # the watch has seen them too


class Progress:
    """Notes when each call's outcome appears in the backend (a thread of its own)."""

    def __init__(self, backend_url: str) -> None:
        self._backend = open_backend(backend_url)
        self._lock = threading.Lock()
        self._waiting: list[str] = []
        self.done: dict[str, float] = {}  # call id -> when its outcome was first seen
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-progress", daemon=True)
        self._thread.start()

    def expect(self, call_ids: list[str]) -> None:
        with self._lock:
            self._waiting.extend(call_ids)

    def _run(self) -> None:
        import json

        while not self._stop.is_set():
            with self._lock:
                waiting = list(self._waiting)
            found: set[str] = set()
            for offset in range(0, len(waiting), 1000):
                chunk = waiting[offset : offset + 1000]
                try:
                    values = self._backend.get_many(chunk)
                except Exception:  # the backend may be what is cut
                    break
                now = time.monotonic()
                for call_id, value in zip(chunk, values, strict=True):
                    if value is not None:
                        found.add(call_id)
                        self.done[call_id] = now
                        with contextlib.suppress(ValueError, TypeError, AttributeError):
                            if json.loads(value).get("status") != "ok":
                                self.errors += 1
            if found:
                with self._lock:
                    self._waiting = [c for c in self._waiting if c not in found]
            self._stop.wait(POLL_S)

    def missing(self) -> int:
        with self._lock:
            return len(self._waiting)

    def wait(self, deadline: float, agent: Agent) -> None:
        """Until every expected outcome is in, or ``deadline`` (monotonic) passes.

        Also ends once the agent and all its workers are gone: nobody is left to answer.
        """
        while self.missing() and time.monotonic() < deadline:
            if not agent.alive and not agent.watch.alive():
                return
            time.sleep(POLL_S)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._backend.close()


@contextlib.contextmanager
def deployed(
    run: Run, stack_name: str, case: str, *, memory_limit: int | None = None
) -> Iterator[Net]:
    """The probe deployed by an agent on fresh services; everything removed afterwards."""
    folder = run.folder / f"{case}-{stack_name}"
    with open_stack(stack_name, folder) as stack:
        declare(stack.env(stack.direct), run.repo_url)
        agent = Agent(stack, "a1", run.venv_cache, memory_limit=memory_limit)
        client = Client(load_settings({}, environment_for_client(stack)))
        try:
            agent.wait_workers()
            client.route(TOUCH)  # read from the model now, before any outage
            client.route(EXIT)
            ledger = Ledger(folder / "ledger.txt")
            net = Net(stack, agent, client, ledger, run.size.busy_ms)
            warm = net.send("warm", 1)
            client.result(warm["warm-0"], 60)
            yield net
        finally:
            agent.stop()
            client.close()


def _account(
    result: CaseResult,
    net: Net,
    sent: dict[str, str],
    progress: Progress,
    killed: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """Fill the counts every case reports, from the backend, ledger, DLQ and processes.

    Returns the dead letters, which only the hostile flood looks into.
    """
    result.sent = len(sent)
    result.results = sum(1 for call_id in sent.values() if call_id in progress.done)
    result.errors = progress.errors
    result.lost = result.sent - result.results
    result.queued = _queued(net.stack.direct["PYFI_BROKER"], TOUCH)
    runs: dict[str, list[int]] = {}
    for token, pid in net.ledger.runs():
        if token in sent:
            runs.setdefault(token, []).append(pid)
    result.executed = len(runs)
    repeated = {token: pids for token, pids in runs.items() if len(pids) > 1}
    result.duplicated = len(repeated)
    result.duplicated_by_death = sum(
        1 for pids in repeated.values() if any(pid in killed for pid in pids[:-1])
    )
    watch = net.agent.watch
    result.agent_survived = net.agent.alive
    result.agent_exit = net.agent.process.poll()
    result.workers_alive = len(watch.alive())
    result.workers_wanted = WORKERS
    result.worker_restarts = max(0, len(watch.seen) - WORKERS)
    result.peak_worker_rss_mb = watch.peak_rss / 1e6
    letters: list[dict[str, Any]] = []
    for socket in (TOUCH, EXIT):
        with contextlib.suppress(Exception):  # a listing must not hide the figures
            letters += list_dead_letters(net.stack.direct["PYFI_BROKER"], socket)
    result.dead_letters = count_reasons(letters)
    return letters


def _queued(broker_url: str, queue: str) -> int | None:
    """How many messages wait in ``queue`` now (a passive declare), if the broker says."""
    from pyfi.broker import Broker

    broker = Broker(broker_url)
    try:
        channel = broker.connection.default_channel
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:  # a count must not hide the other figures
        return None
    finally:
        broker.close()


def kill_workers(run: Run, stack_name: str) -> CaseResult:
    """kill -9 of a random worker, ``kills`` times, while the agent works through calls.

    A baseline phase (the same number of calls, no kills) comes first, so the
    slowdown is a same-run ratio.
    """
    size = run.size
    result = CaseResult("kill-workers", stack_name, size.name)
    result.recovery_means = "median seconds from a kill to its replacement worker"
    with deployed(run, stack_name, "kill-workers") as net:
        progress = Progress(net.stack.direct["PYFI_BACKEND"])
        try:
            start = time.monotonic()
            base = net.send("base", size.kill_calls)
            progress.expect(list(base.values()))
            progress.wait(start + size.deadline_s, net.agent)
            base_s = time.monotonic() - start
            start = time.monotonic()
            chaos = net.send("kill", size.kill_calls)
            progress.expect(list(chaos.values()))
            kills: list[tuple[float, int]] = []
            interval = max(0.5, base_s / (size.kills + 1))
            deadline = start + size.deadline_s
            while len(kills) < size.kills and progress.missing() and time.monotonic() < deadline:
                time.sleep(interval)
                alive = net.agent.watch.alive()
                if alive:
                    pid = random.choice(alive)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        kills.append((time.monotonic(), pid))
            progress.wait(deadline, net.agent)
            chaos_s = time.monotonic() - start
            net.wait_full_strength(time.monotonic() + RESTAFF_S)
            _account(result, net, {**base, **chaos}, progress, frozenset(p for _t, p in kills))
        finally:
            progress.close()
    replacements = _replacement_times([moment for moment, _pid in kills], net.agent.watch)
    if replacements:
        replacements.sort()
        result.recovery_s = replacements[len(replacements) // 2]
        result.extra["replacement max"] = f"{max(replacements):.2f}s"
        if max(replacements) > REPLACEMENT_TARGET_S:
            result.failures.append(
                f"a killed worker took {max(replacements):.1f}s to be replaced "
                f"(target {REPLACEMENT_TARGET_S:.0f}s)"
            )
    elif kills:
        result.failures.append("no killed worker was replaced")
    slowdown = chaos_s / base_s if base_s else 0.0
    result.extra["kills"] = len(kills)
    result.extra["run without kills"] = f"{base_s:.1f}s"
    result.extra["run with kills"] = f"{chaos_s:.1f}s ({slowdown:.2f}x)"
    if kills and slowdown > SLOWDOWN_TARGET:
        result.failures.append(f"the run with kills took {slowdown:.1f}x the run without")
    return result


def _replacement_times(kills: list[float], watch: Watch) -> list[float]:
    """Seconds from each kill to the first worker started after it not already counted."""
    started = sorted(when for when in watch.seen.values())
    times = []
    for moment in sorted(kills):
        later = [when for when in started if when > moment]
        if later:
            times.append(later[0] - moment)
            started.remove(later[0])
    return times


def _outage(run: Run, stack_name: str, case: str, service: str, seconds: float) -> CaseResult:
    """Calls sent at a steady rate; ``service`` cut off from the agent and workers mid-run."""
    size = run.size
    result = CaseResult(case, stack_name, size.name)
    if stack_name != "real":
        result.skipped = "outages are staged through relays on the real stack"
        return result
    result.recovery_means = (
        "seconds from the restore until every call sent before it has its outcome"
    )
    with deployed(run, stack_name, case) as net:
        relay = net.stack.relays[service]
        progress = Progress(net.stack.direct["PYFI_BACKEND"])
        try:
            total_s = 3 * seconds  # a third before the cut, the cut, a third after
            batches = max(1, size.calls // BATCH)
            start = time.monotonic()
            cut_at, restore_at = start + seconds, start + 2 * seconds
            restored: float | None = None
            sent: dict[str, str] = {}
            before_restore: list[str] = []
            for batch in range(batches):
                due = start + total_s * batch / batches
                time.sleep(max(0.0, due - time.monotonic()))
                if relay.up and restored is None and time.monotonic() >= cut_at:
                    relay.cut()
                if not relay.up and time.monotonic() >= restore_at:
                    relay.restore()
                    restored = time.monotonic()
                    before_restore = list(sent.values())
                ids = net.send(case, BATCH, start=batch * BATCH)
                sent.update(ids)
                progress.expect(list(ids.values()))
            if not relay.up:  # a run too short to reach the restore in its loop
                time.sleep(max(0.0, restore_at - time.monotonic()))
                relay.restore()
                restored = time.monotonic()
                before_restore = list(sent.values())
            progress.wait(time.monotonic() + size.deadline_s, net.agent)
            net.wait_full_strength(time.monotonic() + RESTAFF_S)
            _account(result, net, sent, progress)
            if restored is not None and all(c in progress.done for c in before_restore):
                result.recovery_s = (
                    max((progress.done[c] for c in before_restore), default=restored) - restored
                )
                result.recovery_s = max(0.0, result.recovery_s)
            during = sum(1 for when in progress.done.values() if cut_at <= when <= restore_at)
            result.extra["answered during outage"] = during
            if result.worker_restarts:
                result.failures.append(
                    f"{result.worker_restarts} workers were replaced (they should reconnect)"
                )
            result.extra["outage"] = f"{seconds:.0f}s"
            result.extra["relay refused"] = f"{relay.refused} connections while cut"
        finally:
            progress.close()
    return result


def broker_outage(run: Run, stack_name: str) -> CaseResult:
    """RabbitMQ cut off from the agent and workers for a while (the client still sends)."""
    return _outage(run, stack_name, "broker-outage", "broker", run.size.outage_s)


def database_outage(run: Run, stack_name: str) -> CaseResult:
    """PostgreSQL unreachable for the agent and workers (30 s at full size)."""
    return _outage(run, stack_name, "database-outage", "db", run.size.db_outage_s)


def redis_outage(run: Run, stack_name: str) -> CaseResult:
    """Redis (the result backend) unreachable for the agent and workers."""
    return _outage(run, stack_name, "redis-outage", "backend", run.size.outage_s)


def hostile_flood(run: Run, stack_name: str) -> CaseResult:
    """Every hostile kind published straight to the socket's queue, mixed with valid calls."""
    size = run.size
    result = CaseResult("hostile-flood", stack_name, size.name)
    result.recovery_means = "seconds from the end of the flood until every valid call is answered"
    with deployed(run, stack_name, "hostile-flood", memory_limit=HOSTILE_MEMORY_LIMIT) as net:
        progress = Progress(net.stack.direct["PYFI_BACKEND"])
        try:
            log_before = net.agent.worker_log_size()
            per_round = max(1, size.calls // size.flood_rounds)
            sent: dict[str, str] = {}
            published: list[hostile.Hostile] = []
            for serial in range(size.flood_rounds):
                half = per_round // 2
                ids = net.send("valid", half, start=serial * per_round)
                for message in hostile.messages(
                    str(net.ledger.path), serial, oversized=size.oversized, bomb=size.bomb
                ):
                    queue = EXIT if message.kind == "system-exit" else TOUCH
                    hostile.publish(net.client.broker, queue, message)
                    published.append(message)
                ids.update(net.send("valid", per_round - half, start=serial * per_round + half))
                sent.update(ids)
                progress.expect(list(ids.values()))
            flood_end = time.monotonic()
            progress.wait(flood_end + size.deadline_s, net.agent)
            if not progress.missing():
                result.recovery_s = max(progress.done[c] for c in sent.values()) - flood_end
            time.sleep(max(0.0, flood_end + size.settle_s - time.monotonic()))
            net.wait_full_strength(time.monotonic() + RESTAFF_S)
            result.worker_log_growth = net.agent.worker_log_size() - log_before
            letters = _account(result, net, sent, progress)
            _judge_hostile(result, net.ledger.counts(), published, letters)
        finally:
            progress.close()
    return result


def _judge_hostile(
    result: CaseResult,
    runs: Counter[str],
    published: list[hostile.Hostile],
    letters: list[dict[str, Any]],
) -> None:
    """Per kind: how often it ran and how often it was dead-lettered; the flood's targets."""
    texts = [str(letter.get("message") or "") + str(letter.get("raw") or "")[:4096]
             for letter in letters]  # fmt: skip
    by_kind: dict[str, list[int]] = {}
    for message in published:
        ran = runs.get(message.token, 0)
        lettered = sum(1 for text in texts if message.token in text)
        kind = by_kind.setdefault(message.kind, [0, 0, 0])
        kind[0] += 1
        kind[1] += ran
        kind[2] += lettered
    refused_ran = 0
    for kind, (count, ran, lettered) in sorted(by_kind.items()):
        result.extra[f"hostile {kind}"] = f"sent {count}, ran {ran}, dead-lettered {lettered}"
        if kind == "system-exit":
            if ran > SYSTEM_EXIT_RUNS * count:
                result.failures.append(f"a SystemExit call ran {ran} times")
        elif kind in MAY_RUN_ONCE:
            if ran > count:
                result.failures.append(f"{kind} ran {ran} times")
        else:
            refused_ran += ran
    if refused_ran:
        result.failures.append(f"hostile messages executed {refused_ran} times")
    # Every refused message, and the SystemExit call after its retries, is dead-lettered
    # once; a hostile route may instead be replaced by the model's (then no letter).
    least = sum(1 for message in published if message.kind != "hostile-route")
    if not least <= len(letters) <= len(published):
        result.failures.append(f"{len(letters)} dead letters for {least}-{len(published)} expected")
    growth = result.worker_log_growth or 0
    if growth > LOG_BYTES_PER_HOSTILE * len(published):
        result.failures.append(f"the worker log grew by {growth // 1024} KB")
    result.extra["hostile messages"] = len(published)


CASES: dict[str, Callable[[Run, str], CaseResult]] = {
    "kill-workers": kill_workers,
    "broker-outage": broker_outage,
    "database-outage": database_outage,
    "redis-outage": redis_outage,
    "hostile-flood": hostile_flood,
}
