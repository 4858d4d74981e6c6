"""The worker: consume a processor's sockets, run calls, route results, ack late.

Threads and their jobs (kombu channels are not thread-safe):

* the main thread owns the consuming connection: it receives messages, hands
  each to the pool, and settles (acks or requeues) the ones the pool is done
  with;
* each pool thread takes one message at a time along its path, from
  admission to the verdict on it (:mod:`pyfi.worker.pipeline`, whose
  docstring lists the steps in order); a call waiting for the broker's
  confirm or the result store is handed back to the pool, not waited for.

This module is the worker's life around that path: start, consume, hand
messages to the pool, settle what it is done with, pause, reconnect, stop.

A lost broker connection is not the end of the worker: the consuming thread
reconnects with backoff and consumes again. The messages it held come back
redelivered; it gives up their old delivery tags (they meant something on
the lost channel only), lets the calls already running finish and store
their outcome first, and does not start those still waiting (their
redeliveries run them), so nothing runs twice for the blink.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu.message import Message as KombuMessage

from pyfi.backend.base import DEFAULT_JOIN_TTL_S, DEFAULT_RESULT_TTL_S, check_ttl
from pyfi.broker import Broker
from pyfi.broker.wakeup import Wakeup
from pyfi.config import ENV_AGENT_PID, Settings, mask_url
from pyfi.errors import (
    BrokerUnavailable,
    first_line,
)
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.worker import heap, registry, timelimit
from pyfi.worker.admission import Admission, RouteBook, model_routes
from pyfi.worker.pipeline import CallPipeline, PipelineOptions, Step
from pyfi.worker.publishing import BatchPublisher
from pyfi.worker.settlement import REQUEUE, Settlement, Verdict
from pyfi.worker.signals import LifecycleSignals
from pyfi.worker.storing import ResultStorer
from pyfi.worker.telemetry import Telemetry
from pyfi.workflow.engine import FlowDriver

log = logging.getLogger("pyfi.worker")

INFRASTRUCTURE_BACKOFF_S = 1.0
# The longest the consuming thread waits for the broker before it looks at
# its own state again (stop, pause, the agent gone).
IDLE_WAIT_S = 0.25
# Where no socket can be waited on (the embedded broker), how soon the
# consuming thread looks again while messages wait to be acknowledged.
BUSY_POLL_S = 0.005
# How often the consuming thread lets py-amqp send a heartbeat, or notice
# the broker's have stopped (kombu's advice: about once a second).
HEARTBEAT_TICK_S = 1.0
# AMQP heartbeat interval asked of RabbitMQ: a half-open connection is
# noticed within two of them.
DEFAULT_HEARTBEAT_S = 30
# After a reconnect, the longest the worker waits for the calls it was running
# when the connection was lost before it consumes again: their messages come
# back redelivered, and a call found finished then is not run a second time.
ORPHAN_WAIT_S = 30.0

# Messages held per pool thread. Acks are sent by the consuming thread between
# two reads, so with only one message per thread the pool idles while its
# finished calls wait to be acknowledged; four (Celery's multiplier too)
# keeps it busy. A crash redelivers at most this many per thread.
PREFETCH_PER_THREAD = 4


@dataclass
class WorkerOptions:
    """How a worker runs; the defaults suit one worker process per CPU."""

    concurrency: int = 1
    path: Path | None = None
    # Without ``path``: top-level packages the module may be imported from (pyfi.worker.registry).
    allow_installed: tuple[str, ...] = ()
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    join_ttl_s: int = DEFAULT_JOIN_TTL_S
    prefetch: int | None = None
    record: bool = True  # write call and event rows (batched, in the background)
    events: bool = True  # publish live events
    install_signals: bool = True
    # The worker owns its process: exempt start-up objects from garbage
    # collection (pyfi.worker.heap). `flow worker start` sets it.
    freeze_heap: bool = False
    # AMQP heartbeats of the consuming connection, in seconds (0: off).
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    # How long a lost broker is tried again before the worker gives up and
    # exits (None: for ever).
    reconnect_for_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Worker:
    """Serves every enabled socket of one processor until stopped."""

    def __init__(
        self,
        settings: Settings,
        spec: ProcessorSpec,
        options: WorkerOptions,
        *,
        backend: Any,
        telemetry: Telemetry,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.options = options
        self.backend = backend
        self.functions = registry.resolve(spec, options.path, installed=options.allow_installed)
        self._stop = threading.Event()
        self._stop_cause = "stop requested"
        self._paused = threading.Event()
        # The channel the consumers receive on; deliveries of another one came
        # on a lost connection and can no longer be settled ("orphans").
        self._live_channel: Any = None
        self._orphans = 0
        # A message to run (step None), or the next step of one under way.
        self._work: queue.SimpleQueue[tuple[SocketSpec, KombuMessage, Step | None] | None] = (
            queue.SimpleQueue()
        )
        self._settled: queue.SimpleQueue[tuple[KombuMessage, Verdict]] = queue.SimpleQueue()
        self._settlement = Settlement(batch=False)  # the consuming thread's alone
        self._acks_multiple = False
        # The pool's hand-overs end the consuming thread's wait; made by run().
        self._wakeup: Wakeup | None = None
        self._local = threading.local()
        self._publishers: list[Broker] = []
        self._publishers_lock = threading.Lock()
        # Downstream messages go through one publishing thread (see
        # pyfi.worker.publishing); started by run().
        self._batcher: BatchPublisher | None = None
        check_ttl(options.result_ttl_s)  # refused here, not by every store
        self._storer = ResultStorer(backend, backoff_s=INFRASTRUCTURE_BACKOFF_S)
        routes = RouteBook(spec, model_routes(settings.database_url), settings.wire)
        self.admission = Admission(settings.wire, routes)
        self.flows = FlowDriver(
            backend,
            lambda message, route: self._downstream_publisher().publish(message, route),
            lambda batch: self._downstream_publisher().publish_many(list(batch)),
            result_ttl_s=options.result_ttl_s,
            join_ttl_s=options.join_ttl_s,
            route_of=routes.route_of_node,
            max_group_size=settings.wire.max_group_size,
        )
        self.ready = threading.Event()
        # With a time limit, calls run in child processes killed at the limit
        # (pyfi.worker.timelimit); without, None: they run in the pool's threads.
        self._limited = timelimit.for_processor(spec, options.path, size=options.concurrency)
        # Every message's path, from its admission to its verdict.
        self.pipeline = CallPipeline(
            spec,
            PipelineOptions(
                result_ttl_s=options.result_ttl_s,
                join_ttl_s=options.join_ttl_s,
                backoff_s=INFRASTRUCTURE_BACKOFF_S,
            ),
            admission=self.admission,
            functions=self.functions,
            limited=self._limited,
            backend=backend,
            flows=self.flows,
            storer=self._storer,
            telemetry=telemetry,
            publisher=self._publisher,
            downstream_publisher=self._downstream_publisher,
            resume=lambda socket, delivery, step: self._work.put((socket, delivery, step)),
            settle=self._done,
            stopping=self._stop.is_set,
        )

    @property
    def telemetry(self) -> Telemetry:
        """Where the worker reports its calls' progress (the pipeline's)."""
        return self.pipeline.telemetry

    @telemetry.setter
    def telemetry(self, telemetry: Telemetry) -> None:
        self.pipeline.telemetry = telemetry

    # -- lifecycle -------------------------------------------------------
    def stop(self, signum: int | None = None, *_: Any) -> None:
        """Ask the worker to stop: no new messages; in-flight calls finish and are acked."""
        if signum:
            self._request_stop(f"stop requested ({signal.Signals(signum).name})")
        else:
            self._request_stop("stop requested")

    def _request_stop(self, cause: str) -> None:
        if not self._stop.is_set():
            self._stop_cause = cause  # the first reason is the one logged at exit
        self._stop.set()

    def pause(self, *_: Any) -> None:
        """Stop taking new calls; those in flight finish and are acked (no SIGSTOP)."""
        self._paused.set()

    def resume(self, *_: Any) -> None:
        """Take calls again after :meth:`pause`."""
        self._paused.clear()

    def run(self) -> None:
        """Consume until :meth:`stop` (or SIGTERM/SIGINT); then drain and return.

        SIGUSR1 pauses and SIGUSR2 resumes consuming; the agent uses them.
        A lost broker connection is reconnected (see :meth:`_reconnect`), not
        fatal. Whatever ends the worker, its last line in the log says why,
        and the call records it holds are flushed first.

        Raises
        ------
        BrokerUnavailable
            The broker could not be reached at start, or for longer than
            ``reconnect_for_s``.
        """
        if self.options.install_signals:
            signals = LifecycleSignals()
            signals.install()
            signals.hand_over(self)
        name = self.spec.name
        try:
            broker = Broker(self.settings.broker_url, heartbeat_s=self.options.heartbeat_s)
        except BaseException as exc:
            _quietly("flush the call records", self.telemetry.close)
            log.error("worker for processor %s stopped: %s", name, _exit_cause(exc))
            raise
        self._acks_multiple = broker.acks_multiple
        self._settlement = Settlement(batch=self._acks_multiple)
        # Only a socket can be waited on together with the pool's hand-overs;
        # the embedded broker is polled instead (see _receive).
        wakeup = self._wakeup = Wakeup() if broker.wakes_on_socket else None
        batcher = self._batcher = BatchPublisher(self.settings.broker_url)
        concurrency = self.options.concurrency
        pool = [
            threading.Thread(target=self._serve, name=f"pyfi-{name}_{index}", daemon=True)
            for index in range(concurrency)
        ]
        for thread in pool:
            thread.start()
        failure: BaseException | None = None
        try:
            if self._paused.is_set():  # paused while it started: consumes once resumed
                consumers = []
                log.info("worker for processor %s started paused", name)
            else:
                consumers = self._consume(broker)
                log.info(
                    "worker for processor %s consuming %d socket(s) with concurrency %d",
                    name,
                    len(consumers),
                    concurrency,
                )
            if self.options.freeze_heap:
                heap.freeze("consuming")
            self.ready.set()
            consumers = self._serve_until_stopped(broker, consumers)
            log.info("stopping: no new calls; finishing %d in flight", len(self._settlement))
            _cancel(consumers)
            while len(self._settlement):  # graceful: finish, then ack, what was started
                self._settle(block=0.05)
        except BaseException as exc:
            failure = exc
            _log_stopping(name, exc)  # before the clean-up, which may take a while
            raise
        finally:
            self._shut_down(broker, batcher, pool, wakeup)
            # The last line, whatever was logged while cleaning up.
            if failure is None:
                log.info("worker for processor %s stopped: %s", name, self._stop_cause)
            else:
                log.error("worker for processor %s stopped: %s", name, _exit_cause(failure))

    def _shut_down(
        self,
        broker: Broker,
        batcher: BatchPublisher,
        pool: list[threading.Thread],
        wakeup: Wakeup | None,
    ) -> None:
        """Release everything :meth:`run` started, each step on its own.

        One step failing (the broker gone) must not keep the next from
        running: above all the last, which flushes the call records.
        """
        batcher.stop_retrying()  # a call waiting on a lost broker ends now
        for _ in pool:
            self._work.put(None)
        for thread in pool:
            thread.join()
        if self._limited is not None:
            _quietly("stop the time-limited calls' processes", self._limited.close)
        _quietly("store the last results", self._storer.flush)
        _quietly("acknowledge the last calls", self._settle)
        _quietly("close the publisher", batcher.close)
        _quietly("close the broker connection", broker.close)
        self._wakeup = None
        if wakeup is not None:
            _quietly("close the wake-up pipe", wakeup.close)
        for publisher in self._publishers:
            _quietly("close a publisher", publisher.close)
        _quietly("flush the call records", self.telemetry.close)

    def _serve_until_stopped(self, broker: Broker, consumers: list[Any]) -> list[Any]:
        """Receive and settle until stopped, reconnecting a lost broker; the consumers left.

        Only an AMQP connection can be lost: the embedded broker is a folder.
        """
        lost_errors = broker.lost_errors if broker.confirms else ()
        lost_at: float | None = None
        while not self._stop.is_set():
            try:
                if lost_at is not None:
                    consumers = self._reconnect(broker, lost_at)
                    lost_at = None
                consumers = self._serve_turns(broker, consumers)
            except lost_errors as exc:
                if lost_at is None:  # once per outage, however many attempts it takes
                    lost_at = time.monotonic()
                    log.warning(
                        "lost the message broker %s (%s); reconnecting; the %d call(s) "
                        "received on the lost connection will be redelivered",
                        mask_url(broker.url),
                        first_line(exc) or type(exc).__name__,
                        len(self._settlement),
                    )
                self._orphan_deliveries()
                consumers = []
        return consumers

    def _serve_turns(self, broker: Broker, consumers: list[Any]) -> list[Any]:
        """Receive and settle, pausing and resuming on request; the consumers left at the end."""
        parent = int(os.environ.get(ENV_AGENT_PID, "0"))
        heartbeats = self.options.heartbeat_s > 0 and broker.confirms
        heartbeat_due = time.monotonic() + HEARTBEAT_TICK_S
        while not self._stop.is_set():
            if parent and os.getppid() != parent:
                log.warning("the agent that started this worker is gone; stopping")
                self._request_stop("the agent that started it is gone")
                continue
            if self._paused.is_set() and consumers:
                log.info("paused: no new calls; finishing %d in flight", len(self._settlement))
                _cancel(consumers)
                consumers = []
            elif not self._paused.is_set() and not consumers:
                consumers = self._consume(broker)
                log.info("resumed: consuming %d socket(s)", len(consumers))
            self._receive(broker)
            self._settle()
            if heartbeats:  # a clock read per turn, not per message
                now = time.monotonic()
                if now >= heartbeat_due:
                    broker.heartbeat_check()
                    heartbeat_due = now + HEARTBEAT_TICK_S
        return consumers

    def _orphan_deliveries(self) -> None:
        """Give up the messages received on a lost connection: the broker redelivers them.

        They can be neither acknowledged nor requeued any more (their
        delivery tags meant something on the old channel only): calls under
        way finish and store their outcome, then their settlement is dropped
        (see :meth:`_settle`); those not started yet are not run (see
        :meth:`_serve`).
        """
        self._orphans += len(self._settlement)
        self._live_channel = None
        self._settlement = Settlement(batch=self._acks_multiple)

    def _reconnect(self, broker: Broker, lost_at: float) -> list[Any]:
        """Connect again (kombu's reconnect with backoff), then consume again; the consumers.

        Before consuming, the calls under way on the lost connection are
        given up to :data:`ORPHAN_WAIT_S` to finish: their redelivered
        messages then find the outcome stored and are not run again.

        Raises
        ------
        BrokerUnavailable
            The broker stayed away longer than ``reconnect_for_s``.
        """
        parent = int(os.environ.get(ENV_AGENT_PID, "0"))

        def keep_trying() -> None:
            if parent and os.getppid() != parent:
                self._request_stop("the agent that started it is gone")
            if self._stop.is_set():
                raise _StopRequested()

        try:
            broker.reconnect(retry_for_s=self.options.reconnect_for_s, on_retry=keep_trying)
        except _StopRequested:
            log.info("stopping while the message broker is away")
            return []
        log.info(
            "reconnected to the message broker %s after %.1fs",
            mask_url(broker.url),
            time.monotonic() - lost_at,
        )
        if self._orphans:
            log.info(
                "consuming again once the %d call(s) of the lost connection are done",
                self._orphans,
            )
            self._await_orphans(broker)
        consumers = [] if self._paused.is_set() else self._consume(broker)
        log.info(
            "consuming %d socket(s) again, %.1fs after the loss",
            len(consumers),
            time.monotonic() - lost_at,
        )
        return consumers

    def _await_orphans(self, broker: Broker) -> None:
        """Wait (boundedly) for the calls received on the lost connection to finish."""
        deadline = time.monotonic() + ORPHAN_WAIT_S
        heartbeat_due = time.monotonic() + HEARTBEAT_TICK_S
        while self._orphans > 0 and not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                log.warning(
                    "%d call(s) of the lost connection still running; consuming again",
                    self._orphans,
                )
                return
            if now >= heartbeat_due and self.options.heartbeat_s:
                broker.heartbeat_check()
                heartbeat_due = now + HEARTBEAT_TICK_S
            self._settle(block=0.1)

    def _receive(self, broker: Broker) -> None:
        """Wait for deliveries, until the pool hands a finished message back.

        The pool's hand-over ends the wait (see :mod:`pyfi.broker.wakeup`):
        with the prefetch window spent, the broker sends nothing more until
        those messages are acknowledged.
        """
        wakeup = self._wakeup
        if wakeup is None:
            # The embedded broker: no socket to wait on, so look again soon while busy.
            broker.drain(BUSY_POLL_S if len(self._settlement) else IDLE_WAIT_S)
            return
        wakeup.arm()
        try:
            broker.drain(0.0 if not self._settled.empty() else IDLE_WAIT_S, wakeup)
        finally:
            wakeup.disarm()

    def _done(self, delivery: KombuMessage, action: Verdict) -> None:
        """Hand a message the pool is done with to the consuming thread to settle."""
        self._settled.put((delivery, action))
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()

    def _consume(self, broker: Broker) -> list[Any]:
        prefetch = self.options.prefetch or self.options.concurrency * PREFETCH_PER_THREAD
        self._live_channel = broker.connection.default_channel  # the consumers' channel
        return [
            broker.consumer([socket.route], self._receiver(socket), prefetch=prefetch)
            for socket in self.spec.sockets
        ]

    def _receiver(self, socket: SocketSpec) -> Callable[[KombuMessage], None]:
        def on_message(delivery: KombuMessage) -> None:
            if self._paused.is_set():
                # Paused between two turns of the loop: the call waits in its queue.
                delivery.requeue()
                return
            self._settlement.received(delivery)
            self._work.put((socket, delivery, None))

        return on_message

    def _serve(self) -> None:
        """A pool thread: run messages until the ``None`` that ends the pool.

        A plain queue and threads rather than an executor: a future, its
        condition and its callback per message cost the consuming thread more
        than handing the message over does.
        """
        while (item := self._work.get()) is not None:
            socket, delivery, step = item
            if step is None and self._orphans and delivery.channel is not self._live_channel:
                self._done(delivery, REQUEUE)  # an orphan not started: its redelivery runs it
                continue
            try:
                action = self.pipeline.process(socket, delivery, step)
            except BaseException:  # process() handles everything; this is the last guard
                log.exception("unexpected error on a message of %s; requeueing it", socket.name)
                action = REQUEUE
            if action is not Verdict.LATER:
                self._done(delivery, action)

    def _settle(self, block: float = 0.0) -> None:
        """Acknowledge (or requeue) every message the pool is done with, runs in one frame."""
        done: list[tuple[KombuMessage, str]] = []
        while True:
            try:
                delivery, action = (
                    self._settled.get(timeout=block) if block else (self._settled.get_nowait())
                )
            except queue.Empty:
                break
            block = 0.0
            done.append((delivery, action))
        if done and self._orphans:
            # Messages of a lost connection: the broker has requeued them already.
            live = [(d, a) for d, a in done if d.channel is self._live_channel]
            self._orphans = max(0, self._orphans - (len(done) - len(live)))
            done = live
        if done:
            self._settlement.settle(done)

    def _downstream_publisher(self) -> BatchPublisher:
        if self._batcher is None:
            raise BrokerUnavailable("the worker is not running: nothing publishes its messages")
        return self._batcher

    def _publisher(self) -> Broker:
        publisher: Broker | None = getattr(self._local, "broker", None)
        if publisher is None:
            publisher = Broker(self.settings.broker_url)
            self._local.broker = publisher
            with self._publishers_lock:
                self._publishers.append(publisher)
        return publisher


class _StopRequested(Exception):
    """Ends the attempts to reconnect: the worker was asked to stop meanwhile."""


def _log_stopping(processor: str, exc: BaseException) -> None:
    """Log that the worker stops on ``exc``: one line for a known cause, else its traceback."""
    if isinstance(exc, BrokerUnavailable):
        log.error("worker for processor %s stopping: %s", processor, exc)
    else:
        log.critical(
            "worker for processor %s stopping on an unexpected error", processor, exc_info=exc
        )


def _exit_cause(exc: BaseException) -> str:
    """The cause of an exit on ``exc``, in one line."""
    if isinstance(exc, BrokerUnavailable):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {first_line(exc)} (traceback above)"


def _quietly(what: str, step: Callable[[], object]) -> None:
    """Run one step of stopping; a failure is logged, and the next step runs anyway."""
    try:
        step()
    except Exception:
        log.warning("while stopping, could not %s", what, exc_info=True)


def _cancel(consumers: list[Any]) -> None:
    for consumer in consumers:
        consumer.cancel()
