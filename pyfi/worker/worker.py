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

from kombu.message import Message as KombuMessage

from pyfi.backend.base import DEFAULT_JOIN_TTL_S, DEFAULT_RESULT_TTL_S, check_ttl
from pyfi.broker import Broker
from pyfi.broker.wakeup import Wakeup
from pyfi.config import ENV_AGENT_PID, Settings
from pyfi.errors import (
    BackendUnavailable,
    BrokerUnavailable,
    DatabaseUnavailable,
    MessageDecodeError,
)
from pyfi.limits import admit_body, kept_raw
from pyfi.message import Message, derived_id
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.worker import heap, registry
from pyfi.worker.admission import Admission, RouteBook, model_routes
from pyfi.worker.deadletter import dead_letter_body
from pyfi.worker.executor import Outcome, execute
from pyfi.worker.publishing import BatchPublisher
from pyfi.worker.router import downstream
from pyfi.worker.settlement import ACK, REQUEUE, Settlement
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
# What _handle returns when the message is settled later, once its result is stored.
LATER = "later"
# The rest of a message's handling, run by a pool thread; returns how to settle it.
Step = Callable[[], str]

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
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    join_ttl_s: int = DEFAULT_JOIN_TTL_S
    prefetch: int | None = None
    record: bool = True  # write call and event rows (batched, in the background)
    events: bool = True  # publish live events
    install_signals: bool = True
    # The worker owns its process: exempt start-up objects from garbage
    # collection (pyfi.worker.heap). `flow worker start` sets it.
    freeze_heap: bool = False
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
        self.functions = registry.resolve(spec, options.path)
        self._stop = threading.Event()
        self._paused = threading.Event()
        # A message to run (step None), or the next step of one under way.
        self._work: queue.SimpleQueue[tuple[SocketSpec, KombuMessage, Step | None] | None] = (
            queue.SimpleQueue()
        )
        self._settled: queue.SimpleQueue[tuple[KombuMessage, str]] = queue.SimpleQueue()
        self._settlement = Settlement(batch=False)  # the consuming thread's alone
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

    # -- lifecycle -------------------------------------------------------
    def stop(self, *_: Any) -> None:
        """Ask the worker to stop: no new messages; in-flight calls finish and are acked."""
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
        """
        if self.options.install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGUSR1, self.pause)
            signal.signal(signal.SIGUSR2, self.resume)
        broker = Broker(self.settings.broker_url)
        self._settlement = Settlement(batch=broker.acks_multiple)
        # Only a socket can be waited on together with the pool's hand-overs;
        # the embedded broker is polled instead (see _receive).
        wakeup = self._wakeup = Wakeup() if broker.wakes_on_socket else None
        self._batcher = BatchPublisher(self.settings.broker_url)
        concurrency = self.options.concurrency
        pool = [
            threading.Thread(target=self._serve, name=f"pyfi-{self.spec.name}_{index}", daemon=True)
            for index in range(concurrency)
        ]
        for thread in pool:
            thread.start()
        consumers = self._consume(broker)
        log.info(
            "worker for processor %s consuming %d socket(s) with concurrency %d",
            self.spec.name,
            len(consumers),
            concurrency,
        )
        if self.options.freeze_heap:
            heap.freeze("consuming")
        self.ready.set()
        try:
            consumers = self._serve_until_stopped(broker, consumers)
            log.info("stopping: no new calls; finishing %d in flight", len(self._settlement))
            _cancel(consumers)
            while len(self._settlement):  # graceful: finish, then ack, what was started
                self._settle(block=0.05)
        finally:
            for _ in pool:
                self._work.put(None)
            for thread in pool:
                thread.join()
            self._storer.flush()
            self._settle()
            self._batcher.close()
            broker.close()
            self._wakeup = None
            if wakeup is not None:
                wakeup.close()
            for publisher in self._publishers:
                publisher.close()
            self.telemetry.close()
            log.info("worker for processor %s stopped", self.spec.name)

    def _serve_until_stopped(self, broker: Broker, consumers: list[Any]) -> list[Any]:
        """Receive and settle, pausing and resuming on request; the consumers left at the end."""
        parent = int(os.environ.get(ENV_AGENT_PID, "0"))
        while not self._stop.is_set():
            if parent and os.getppid() != parent:
                log.warning("the agent that started this worker is gone; stopping")
                self.stop()
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
        return consumers

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
        except (BrokerUnavailable, BackendUnavailable, DatabaseUnavailable, OSError) as exc:
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
    ) -> str:
        """Hand the outcome over to be stored; the message is settled once it is."""
        self._storer.submit(
            call.call_id,
            encoded,
            self.options.result_ttl_s,
            lambda error: self._stored(socket, call, outcome, delivery, error),
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
        delivery: KombuMessage,
        error: BaseException | None,
    ) -> None:
        """Report ``call`` finished and settle its message, once its outcome is stored."""
        if error is not None:
            log.warning(
                "call on %s will be retried: its result was not stored: %s", socket.name, error
            )
            self._done(delivery, REQUEUE)
            return
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


def _cancel(consumers: list[Any]) -> None:
    for consumer in consumers:
        consumer.cancel()


def _outcome_from_stored(stored: str) -> Outcome:
    data = json.loads(stored)
    if data.get("status") == "ok":
        return Outcome(ok=True, value=data.get("value"))
    return Outcome(ok=False, error=data.get("error"))
