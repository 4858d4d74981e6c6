"""The worker: consume a processor's sockets, run calls, route results, ack late.

Threads and their jobs (kombu channels are not thread-safe):

* the main thread owns the consuming connection: it receives messages, hands
  each to the pool, and settles (acks or requeues) the ones the pool is done
  with;
* each pool thread runs one call at a time and hands its downstream messages
  to the publishing thread (:mod:`pyfi.worker.publishing`) without waiting
  for the broker's confirm; once they are confirmed, a pool thread takes the
  call up again and hands its outcome over to be stored with others that
  finished meanwhile (:mod:`pyfi.worker.storing`); the message is reported
  done once stored.

A message is acknowledged only after its downstream messages are confirmed
and then its result is stored, so a crash at any instant means redelivery,
never loss, and a result a caller can see means the call's messages are out.
A redelivered call whose result is already stored is not run again: its
downstream messages are re-sent (they carry the same ids) and it is acked.

A lost broker connection is not the end of the worker: the consuming thread
reconnects with backoff and consumes again. The messages it held come back
redelivered; it gives up their old delivery tags (they meant something on
the lost channel only), lets the calls already running finish and store
their outcome first, and does not start those still waiting (their
redeliveries run them), so nothing runs twice for the blink.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from amqp.exceptions import RecoverableConnectionError
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.message import Message as KombuMessage

from pyfi.backend.base import DEFAULT_JOIN_TTL_S, DEFAULT_RESULT_TTL_S, check_ttl
from pyfi.broker import Broker
from pyfi.broker.wakeup import Wakeup
from pyfi.config import ENV_AGENT_PID, Settings, mask_url
from pyfi.errors import (
    BackendUnavailable,
    BrokerUnavailable,
    DatabaseUnavailable,
    MessageDecodeError,
    first_line,
)
from pyfi.limits import admit_body, kept_raw
from pyfi.message import Message, derived_id
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.worker import heap, registry, timelimit
from pyfi.worker.admission import Admission, RouteBook, model_routes
from pyfi.worker.deadletter import dead_letter_body
from pyfi.worker.executor import Outcome, execute
from pyfi.worker.publishing import BatchPublisher
from pyfi.worker.router import downstream
from pyfi.worker.settlement import ACK, REQUEUE, Settlement
from pyfi.worker.signals import LifecycleSignals
from pyfi.worker.storing import ResultStorer
from pyfi.worker.telemetry import Telemetry
from pyfi.workflow.engine import FlowDriver

log = logging.getLogger("pyfi.worker")

MAX_RETRY_DELAY_S = 3600
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
# What _handle returns when the message is settled later, once its result is stored.
LATER = "later"
# The rest of a message's handling, run by a pool thread; returns how to settle it.
Step = Callable[[], str]

# A service failing under a call, not the call or the worker: the message is
# kept (requeued) after a pause. kombu's and py-amqp's own errors are among
# them: a pool thread publishing while the connection is lost sees those.
_INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    BrokerUnavailable,
    BackendUnavailable,
    DatabaseUnavailable,
    KombuOperationalError,
    RecoverableConnectionError,
    OSError,
)

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
        self.telemetry = telemetry
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
        self._settled: queue.SimpleQueue[tuple[KombuMessage, str]] = queue.SimpleQueue()
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

    def _done(self, delivery: KombuMessage, action: str) -> None:
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
                action = self._process(socket, delivery, step)
            except BaseException:  # _process handles everything; this is the last guard
                log.exception("unexpected error on a message of %s; requeueing it", socket.name)
                action = REQUEUE
            if action != LATER:
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

    # -- one message (pool thread) ---------------------------------------
    def _process(self, socket: SocketSpec, delivery: KombuMessage, step: Step | None) -> str:
        """Run a message, or the next ``step`` of one, and say how to settle it."""
        try:
            return step() if step is not None else self._handle(socket, delivery)
        except _INFRASTRUCTURE_ERRORS as exc:
            # The broker or the result store is failing: keep the message
            # (requeue) and slow down rather than spin.
            log.warning("call on %s will be retried: %s", socket.name, exc)
            time.sleep(INFRASTRUCTURE_BACKOFF_S)
            return REQUEUE
        except Exception as exc:
            # A fault of the worker itself on this message: requeueing would
            # loop forever, so set the message aside where it can be replayed.
            log.exception("internal error on a message of %s; dead-lettering it", socket.name)
            return self._set_aside(socket, delivery, exc)

    def _set_aside(self, socket: SocketSpec, delivery: KombuMessage, exc: Exception) -> str:
        body = delivery.body if isinstance(delivery.body, bytes) else str(delivery.body).encode()
        try:
            limits = self.settings.wire
            call = Message.decode(admit_body(body, delivery.headers, limits), limits)
        except MessageDecodeError:
            call = None
        try:
            self._publisher().publish_to_queue(
                socket.route.dead_letter_queue,
                dead_letter_body(
                    call,
                    reason=f"worker error: {type(exc).__name__}: {exc}",
                    raw=None if call else kept_raw(body),
                ),
                {"pyfi-reason": "worker-error"},
            )
        except (BrokerUnavailable, OSError):
            time.sleep(INFRASTRUCTURE_BACKOFF_S)
            return REQUEUE
        return ACK

    def _handle(self, socket: SocketSpec, delivery: KombuMessage) -> str:
        publisher = self._publisher()
        try:
            message = self.admission.admit(socket, delivery.body, delivery.headers)
        except MessageDecodeError as exc:
            letter = dead_letter_body(
                None, reason=f"undecodable message: {exc}", raw=kept_raw(delivery.body)
            )
            publisher.publish_to_queue(
                socket.route.dead_letter_queue,
                letter,
                {"pyfi-reason": "undecodable"},
            )
            log.warning("dead-lettered an undecodable message on %s: %s", socket.name, exc)
            return ACK
        if message.socket != socket.name:  # a fanout exchange delivered a sibling's call
            # The copy is this socket's own call; a flow goes on from the addressee only.
            message = replace(
                message,
                socket=socket.name,
                call_id=derived_id(message.call_id, socket.name),
                flow=None,
            )
        joined = socket.wait and message.argument in socket.join_arguments
        begun = self._begin(socket, message, joined=joined, delivery=delivery)
        if begun is None:
            return ACK  # one argument of the join recorded; others still to come
        call, stored = begun
        if stored is not None:
            outcome = _outcome_from_stored(stored)
        elif self._limited is not None:
            outcome = self._limited.execute(socket.name, call.args, call.kwargs)
        else:
            outcome = execute(self.functions[socket.name], call.args, call.kwargs)
        if stored is None and outcome.ok and not joined:
            return self._conclude_later(socket, call, outcome, delivery)
        if not self._conclude(socket, call, outcome, publisher, already_stored=stored is not None):
            return ACK  # retried later: nothing to store
        if stored is not None:
            self._report(socket, call, outcome)
            return ACK
        encoded = outcome.encode()
        if joined:
            # The join is released only once the result is out, so it stores now.
            self.backend.store(call.call_id, encoded, self.options.result_ttl_s)
            self.backend.complete_join(call.tracking_id, socket.name)
            self._report(socket, call, outcome)
            return ACK
        return self._store_later(socket, call, outcome, encoded, delivery)

    def _begin(
        self, socket: SocketSpec, message: Message, *, joined: bool, delivery: KombuMessage
    ) -> tuple[Message, str | None] | None:
        """Report the call received (and running, unless done before); None while a join waits.

        Returns the call to run, and its stored outcome when a redelivered
        call had finished before: it is not run again.
        """
        redelivered = bool(delivery.delivery_info.get("redelivered"))
        if not joined and not redelivered:
            self.telemetry.started(socket, message)  # received and running: one step
            return message, None
        self.telemetry.received(socket, message)
        call = message
        if joined:
            combined = self._join(socket, message)
            # The delivery's own part ends here, whether the join still waits
            # or this delivery fired it: the join runs as a call of its own.
            self.telemetry.joined(socket, message)
            if combined is None:
                return None
            call = combined
            self.telemetry.received(socket, call)
        stored = self.backend.get(call.call_id) if redelivered else None
        if stored is None:
            self.telemetry.running(socket, call)
        return call, stored

    def _store_later(
        self,
        socket: SocketSpec,
        call: Message,
        outcome: Outcome,
        encoded: str,
        delivery: KombuMessage,
        *,
        attempt: int = 1,
    ) -> str:
        """Hand the outcome over to be stored; the message is settled once it is."""
        self._storer.submit(
            call.call_id,
            encoded,
            self.options.result_ttl_s,
            lambda error: self._stored(socket, call, outcome, encoded, delivery, error, attempt),
        )
        return LATER

    def _conclude_later(
        self, socket: SocketSpec, call: Message, outcome: Outcome, delivery: KombuMessage
    ) -> str:
        """The common path: publish what follows a success without sitting out the confirm.

        The same order as :meth:`_conclude` then a store: downstream messages
        confirmed, then joins a flow fired released, then the outcome stored,
        then the message acknowledged. Only no thread waits in between: the
        confirm (for a persistent message, the broker's write to disk) hands
        the call back to the pool, which stores it; a pool thread meanwhile
        runs other calls, so a pipeline's throughput is bounded by the
        prefetch rather than by the number of threads.
        """
        out = list(downstream(socket, call, outcome))
        fired: list[tuple[str, str]] = []
        if call.flow is not None:
            steps, fired = self.flows.next_steps(call, outcome.value)
            out.extend(steps)
        encoded = outcome.encode()

        def store() -> str:
            self.flows.release(fired)
            return self._store_later(socket, call, outcome, encoded, delivery)

        if not out:
            return store()

        def confirmed(error: BaseException | None) -> None:
            # On the publishing thread: hand over, never block it.
            self._work.put((socket, delivery, store if error is None else _raiser(error)))

        self._downstream_publisher().publish_then(out, confirmed)
        return LATER

    def _stored(
        self,
        socket: SocketSpec,
        call: Message,
        outcome: Outcome,
        encoded: str,
        delivery: KombuMessage,
        error: BaseException | None,
        attempt: int,
    ) -> None:
        """Report ``call`` finished and settle its message, once its outcome is stored.

        An outcome the result store refused is stored again (the storer
        pauses between attempts) while its message stays unacknowledged:
        requeueing it would have the function run again, side effects and
        all, once the store is back. Only a worker that stops meanwhile lets
        the message go back to its queue.
        """
        if error is not None:
            if self._stop.is_set():
                log.warning(
                    "call %s on %s will run again: the worker stops and its result was not "
                    "stored: %s",
                    call.call_id,
                    socket.name,
                    error,
                )
                self._done(delivery, REQUEUE)
                return
            if attempt == 1:  # once per call, however long the store is away
                log.warning(
                    "the result of call %s on %s was not stored (%s); storing it again, its "
                    "message held until then",
                    call.call_id,
                    socket.name,
                    error,
                )
            self._store_later(socket, call, outcome, encoded, delivery, attempt=attempt + 1)
            return
        if attempt > 1:
            log.info("the result of call %s on %s is stored", call.call_id, socket.name)
        try:
            self._report(socket, call, outcome)
        except Exception:  # the call is done: a failing report must not leave it unsettled
            log.exception("could not report call %s on %s as finished", call.call_id, socket.name)
        self._done(delivery, ACK)

    def _join(self, socket: SocketSpec, message: Message) -> Message | None:
        assert message.argument is not None
        values = self.backend.join(
            message.tracking_id,
            socket.name,
            message.argument,
            json.dumps(message.kwargs.get(message.argument)),
            socket.join_arguments,
            message.call_id,
            self.options.join_ttl_s,
        )
        if values is None:
            return None
        return Message(
            call_id=derived_id(message.tracking_id, socket.name, "join"),
            tracking_id=message.tracking_id,
            socket=socket.name,
            kwargs={name: json.loads(value) for name, value in values.items()},
            parent_id=message.parent_id,
            idempotency_key=message.idempotency_key,
        )

    def _conclude(
        self,
        socket: SocketSpec,
        call: Message,
        outcome: Outcome,
        publisher: Broker,
        *,
        already_stored: bool,
    ) -> bool:
        """Publish what follows from ``outcome``; False when the call is retried instead.

        The outcome is stored after this returns: once a caller can see it,
        every downstream message and dead letter of the call is published.
        """
        if not outcome.ok and not already_stored and self._should_retry(call, outcome):
            delay_s = self._retry_delay(call, outcome)
            publisher.publish(call.retried(), socket.route, delay_ms=int(delay_s * 1000))
            self.telemetry.retrying(socket, call, outcome, delay_s)
            return False
        self._downstream_publisher().publish_many(list(downstream(socket, call, outcome)))
        if call.flow is not None and not already_stored:
            if outcome.ok:
                self.flows.advance(call, outcome.value)
            else:
                self.flows.fail(call, {**(outcome.error or {}), "socket": socket.name})
        if not outcome.ok and not already_stored:
            publisher.publish_to_queue(
                socket.route.dead_letter_queue,
                dead_letter_body(call, reason="failed after retries", error=outcome.error),
                {"pyfi-reason": "failed"},
            )
        return True

    def _report(self, socket: SocketSpec, call: Message, outcome: Outcome) -> None:
        if outcome.ok:
            self.telemetry.finished(socket, call, outcome)
        else:
            self.telemetry.failed(socket, call, outcome)

    def _should_retry(self, call: Message, outcome: Outcome) -> bool:
        # Retry(...) from user code only chooses the delay: attempts stay bounded.
        return call.attempt <= self.spec.retries

    def _retry_delay(self, call: Message, outcome: Outcome) -> float:
        if outcome.retry_delay_s is not None:
            return max(0.0, outcome.retry_delay_s)
        base = max(self.spec.retry_delay_s, 0)
        return float(min(base * 2 ** (call.attempt - 1), MAX_RETRY_DELAY_S))


def _raiser(error: BaseException) -> Step:
    """A step that fails with ``error``, so the pool settles it as it would have been raised."""

    def fail() -> str:
        raise error

    return fail


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


def _outcome_from_stored(stored: str) -> Outcome:
    data = json.loads(stored)
    if data.get("status") == "ok":
        return Outcome(ok=True, value=data.get("value"))
    return Outcome(ok=False, error=data.get("error"))
