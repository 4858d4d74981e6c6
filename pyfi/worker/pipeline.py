"""One call's path through a worker, in the order it happens.

:meth:`CallPipeline.handle` is the whole path of a message, one step a line:

1. **admit**: check the delivery against the wire limits and decode it
   (:mod:`pyfi.worker.admission`); a refused message is dead-lettered once;
2. **begin**: report the call received; an argument of a join waits for the
   others; a redelivered call whose outcome is stored is not run again;
3. **execute** the function (:mod:`pyfi.worker.executor`, or a child
   process under a time limit, :mod:`pyfi.worker.timelimit`);
4. **retry** a failure that has attempts left: it is published again, delayed;
5. **route** the outcome: one message per matching plug
   (:mod:`pyfi.worker.router`) and a flow's next steps;
6. **publish** them with confirms, without a thread waiting for the broker:
   the confirm hands the call back to the pool at step 7; messages not
   confirmed are published again (same ids), the function not run again;
7. **release** the joins of the flow the call fired; a failure for good fails
   its flow and is dead-lettered;
8. **store** the outcome, batched with others (:mod:`pyfi.worker.storing`);
   an outcome the store refuses is stored again, its message held;
9. **report** the call finished or failed (:mod:`pyfi.worker.telemetry`);
10. **settle**: the message is acknowledged
    (:class:`~pyfi.worker.settlement.Verdict`).

Each step is a method below, in that order. A message is acknowledged only
after its downstream messages are confirmed and then its outcome stored, so a
crash at any instant means redelivery, never loss, and an outcome a caller can
see means the call's messages are out.

Steps 1 to 6 run on the pool thread that took the message; steps 7 to 10 on
whichever pool thread the confirm and the store hand the call back to. The
pipeline never settles a message itself: it returns a verdict, or hands it to
``settle`` once a later step decides.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from amqp.exceptions import RecoverableConnectionError
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.message import Message as KombuMessage

from pyfi.broker import Broker, SocketRoute
from pyfi.errors import (
    BackendUnavailable,
    BrokerUnavailable,
    DatabaseUnavailable,
    MessageDecodeError,
)
from pyfi.limits import admit_body, kept_raw
from pyfi.message import Message, derived_id
from pyfi.outcome import Outcome, decode_outcome
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.worker.admission import Admission
from pyfi.worker.deadletter import Letter
from pyfi.worker.executor import execute
from pyfi.worker.publishing import BatchPublisher
from pyfi.worker.retrying import retry_delay
from pyfi.worker.router import downstream
from pyfi.worker.settlement import Verdict
from pyfi.worker.storing import ResultStorer
from pyfi.worker.telemetry import Telemetry
from pyfi.worker.timelimit import TimeLimitedCalls
from pyfi.workflow.engine import FlowDriver

log = logging.getLogger("pyfi.worker")

ACK, REQUEUE, LATER = Verdict.ACK, Verdict.REQUEUE, Verdict.LATER

# The rest of a message's path, run by a pool thread; returns how to settle it.
Step = Callable[[], Verdict]
# Hands the next step of a call to the pool (from the publishing thread, say).
Resume = Callable[[SocketSpec, KombuMessage, Step], None]
# Settles a message whose verdict a later step reached.
Settle = Callable[[KombuMessage, Verdict], None]

# A service failing under a call, not the call or the worker: the message is
# kept (requeued) after a pause. kombu's and py-amqp's own errors are among
# them: a pool thread publishing while the connection is lost sees those.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    BrokerUnavailable,
    BackendUnavailable,
    DatabaseUnavailable,
    KombuOperationalError,
    RecoverableConnectionError,
    OSError,
)


@dataclass
class CallInFlight:
    """One call between its admission and its settlement."""

    socket: SocketSpec
    delivery: KombuMessage
    call: Message
    # Wait arguments gathered into one call: its join is released once its
    # outcome is stored.
    joined: bool
    outcome: Outcome | None = None
    # The outcome was stored by an earlier delivery: not run, stored or
    # dead-lettered again; its downstream messages are sent again (same ids).
    stored: bool = False
    # Joins of a flow this call fired, released once what they caused is out.
    fired: list[tuple[str, str]] = field(default_factory=list)
    publish_attempts: int = 0
    store_attempts: int = 0

    @property
    def result(self) -> Outcome:
        """The outcome, once executed (or read back)."""
        assert self.outcome is not None
        return self.outcome


@dataclass(frozen=True)
class PipelineOptions:
    """What the pipeline needs of the worker's options."""

    result_ttl_s: int
    join_ttl_s: int
    # The pause before a message kept for a failing service is given back.
    backoff_s: float


class CallPipeline:
    """The path of every message of one worker, shared by its pool threads."""

    def __init__(
        self,
        spec: ProcessorSpec,
        options: PipelineOptions,
        *,
        admission: Admission,
        functions: Mapping[str, Callable[..., Any]],
        limited: TimeLimitedCalls | None,
        backend: Any,
        flows: FlowDriver,
        storer: ResultStorer,
        telemetry: Telemetry,
        publisher: Callable[[], Broker],
        downstream_publisher: Callable[[], BatchPublisher],
        resume: Resume,
        settle: Settle,
        stopping: Callable[[], bool],
    ) -> None:
        self.spec = spec
        self.options = options
        self.admission = admission
        self.functions = functions
        self.limited = limited
        self.backend = backend
        self.flows = flows
        self.storer = storer
        self.telemetry = telemetry
        self._publisher = publisher  # this thread's own connection
        self._downstream_publisher = downstream_publisher  # the pool's publishing thread
        self._resume = resume
        self._settle = settle
        self._stopping = stopping

    def process(self, socket: SocketSpec, delivery: KombuMessage, step: Step | None) -> Verdict:
        """Run a message from the start, or the next ``step`` of one; how to settle it.

        A failing service keeps the message (requeued after a pause); a fault
        of the worker itself on it sets it aside, since requeueing would loop.
        """
        try:
            return step() if step is not None else self.handle(socket, delivery)
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("call on %s will be retried: %s", socket.name, exc)
            time.sleep(self.options.backoff_s)
            return REQUEUE
        except Exception as exc:
            log.exception("internal error on a message of %s; dead-lettering it", socket.name)
            return self._set_aside(socket, delivery, exc)

    def handle(self, socket: SocketSpec, delivery: KombuMessage) -> Verdict:
        """One message, top to bottom (steps 1 to 6; the confirm resumes it at 7)."""
        admitted = self.admit(socket, delivery)
        if isinstance(admitted, Letter):
            return self.dead_letter(socket, admitted)
        job = self.begin(socket, admitted, delivery)
        if job is None:
            return ACK  # one argument of the join recorded; others still to come
        self.execute(job)
        if self.retry(job):
            return ACK
        return self.publish(job, self.route(job))

    # -- 1. admit --------------------------------------------------------
    def admit(self, socket: SocketSpec, delivery: KombuMessage) -> Message | Letter:
        """The call ``delivery`` carries for ``socket``, or the letter it is refused with."""
        try:
            message = self.admission.admit(socket, delivery.body, delivery.headers)
        except MessageDecodeError as exc:
            log.warning("dead-lettering an undecodable message on %s: %s", socket.name, exc)
            return Letter("undecodable", f"undecodable message: {exc}", raw=kept_raw(delivery.body))
        if message.socket != socket.name:  # a fanout exchange delivered a sibling's call
            # The copy is this socket's own call; a flow goes on from the addressee only.
            message = replace(
                message,
                socket=socket.name,
                call_id=derived_id(message.call_id, socket.name),
                flow=None,
            )
        return message

    # -- 2. begin --------------------------------------------------------
    def begin(
        self, socket: SocketSpec, message: Message, delivery: KombuMessage
    ) -> CallInFlight | None:
        """Report the call received (and running, unless done before); None while a join waits.

        A redelivered call that finished before comes with its stored
        outcome: it is not run again.
        """
        joined = socket.wait and message.argument in socket.join_arguments
        redelivered = bool(delivery.delivery_info.get("redelivered"))
        if not joined and not redelivered:
            self.telemetry.started(socket, message)  # received and running: one step
            return CallInFlight(socket, delivery, message, joined=False)
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
        job = CallInFlight(socket, delivery, call, joined=joined)
        stored = self.backend.get(call.call_id) if redelivered else None
        if stored is None:
            self.telemetry.running(socket, call)
        else:
            job.outcome, job.stored = decode_outcome(stored), True
        return job

    def _join(self, socket: SocketSpec, message: Message) -> Message | None:
        """Record one argument of a join; the joined call once every argument is in."""
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

    # -- 3. execute ------------------------------------------------------
    def execute(self, job: CallInFlight) -> None:
        """Run the function, unless the outcome is known already."""
        if job.outcome is not None:
            return
        call, name = job.call, job.socket.name
        if self.limited is not None:
            job.outcome = self.limited.execute(name, call.args, call.kwargs)
        else:
            job.outcome = execute(self.functions[name], call.args, call.kwargs)

    # -- 4. retry --------------------------------------------------------
    def retry(self, job: CallInFlight) -> bool:
        """Publish a failed call again, delayed, if it has attempts left; whether it was."""
        if job.stored:
            return False
        delay_s = retry_delay(self.spec, job.call, job.result)
        if delay_s is None:
            return False
        self._publisher().publish(
            job.call.retried(), job.socket.route, delay_ms=int(delay_s * 1000)
        )
        self.telemetry.retrying(job.socket, job.call, job.result, delay_s)
        return True

    # -- 5. route --------------------------------------------------------
    def route(self, job: CallInFlight) -> list[tuple[Message, SocketRoute]]:
        """The messages the outcome sends on: the plugs', then a flow's next steps.

        A flow that ends with this call has its outcome stored here.
        """
        out = downstream(job.socket, job.call, job.result)
        if job.call.flow is not None and job.result.ok and not job.stored:
            steps, job.fired = self.flows.next_steps(job.call, job.result.value)
            out.extend(steps)
        return out

    # -- 6. publish ------------------------------------------------------
    def publish(self, job: CallInFlight, out: list[tuple[Message, SocketRoute]]) -> Verdict:
        """Hand ``out`` to the publishing thread; the confirm resumes the call at step 7.

        No thread waits for the confirm (for a persistent message, the
        broker's write to disk): a pool thread meanwhile runs other calls, so
        a pipeline's throughput is bounded by the prefetch rather than by the
        number of threads. Messages not confirmed are published again (see
        :meth:`publish_again`): the function does not run again.
        """
        if not out:
            return self.conclude(job)
        job.publish_attempts += 1

        def confirmed(error: BaseException | None) -> None:
            # On the publishing thread: hand over, never block it.
            if error is None:
                step = partial(self.conclude, job)
            else:
                step = partial(self.publish_again, job, out, error)
            self._resume(job.socket, job.delivery, step)

        self._downstream_publisher().publish_then(out, confirmed)
        return LATER

    def publish_again(
        self, job: CallInFlight, out: list[tuple[Message, SocketRoute]], error: BaseException
    ) -> Verdict:
        """Publish messages the broker did not confirm again, the call's message held meanwhile.

        Requeueing the message would have the function run again, side
        effects and all. The messages keep their ids (derived from the call),
        so one that got through before is recognisable downstream; nothing
        is stored or released before they are confirmed. Only a worker that
        stops meanwhile lets the message go back to its queue.
        """
        if self._stopping():
            log.warning(
                "call %s on %s will run again: the worker stops and its downstream messages "
                "were not confirmed: %s",
                job.call.call_id,
                job.socket.name,
                error,
            )
            return REQUEUE
        if job.publish_attempts == 1:  # once per call, however long the broker refuses
            log.warning(
                "the downstream messages of call %s on %s were not confirmed (%s); publishing "
                "them again, its message held until then",
                job.call.call_id,
                job.socket.name,
                error,
            )
        time.sleep(self.options.backoff_s)
        return self.publish(job, out)

    # -- 7. release joins, fail for good ---------------------------------
    def conclude(self, job: CallInFlight) -> Verdict:
        """What follows once the downstream messages are out, up to the store."""
        self.flows.release(job.fired)
        if not job.result.ok and not job.stored:
            if job.call.flow is not None:
                self.flows.fail(job.call, {**(job.result.error or {}), "socket": job.socket.name})
            self.dead_letter(
                job.socket,
                Letter("failed", "failed after retries", job.call, error=job.result.error),
            )
        return self.store(job)

    # -- 8. store --------------------------------------------------------
    def store(self, job: CallInFlight) -> Verdict:
        """Hand the outcome over to be stored; the message is settled once it is."""
        if job.stored:
            return self.report(job)
        job.store_attempts += 1
        self.storer.submit(
            job.call.call_id,
            job.result.encode(),
            self.options.result_ttl_s,
            partial(self._stored, job),
        )
        return LATER

    def _stored(self, job: CallInFlight, error: BaseException | None) -> None:
        """Go on once the outcome is stored; store it again if the store refused it.

        An outcome the result store refused is stored again (the storer
        pauses between attempts) while its message stays unacknowledged:
        requeueing it would have the function run again, side effects and
        all, once the store is back. Only a worker that stops meanwhile lets
        the message go back to its queue.
        """
        call, socket = job.call, job.socket
        if error is not None:
            if self._stopping():
                log.warning(
                    "call %s on %s will run again: the worker stops and its result was not "
                    "stored: %s",
                    call.call_id,
                    socket.name,
                    error,
                )
                self._settle(job.delivery, REQUEUE)
                return
            if job.store_attempts == 1:  # once per call, however long the store is away
                log.warning(
                    "the result of call %s on %s was not stored (%s); storing it again, its "
                    "message held until then",
                    call.call_id,
                    socket.name,
                    error,
                )
            self.store(job)
            return
        if job.store_attempts > 1:
            log.info("the result of call %s on %s is stored", call.call_id, socket.name)
        if job.joined:
            # Released only once the outcome is out; a pool step, whose failure
            # requeues the message like any step's.
            self._resume(socket, job.delivery, partial(self.release_join, job))
            return
        self._settle(job.delivery, self.report(job))

    def release_join(self, job: CallInFlight) -> Verdict:
        """Forget the join of wait arguments ``job`` ran: its outcome is stored."""
        self.backend.complete_join(job.call.tracking_id, job.socket.name)
        return self.report(job)

    # -- 9. report, 10. settle -------------------------------------------
    def report(self, job: CallInFlight) -> Verdict:
        """Report the call finished or failed; the verdict on its message (acknowledge).

        The call is done: a failing report must not leave it unsettled.
        """
        try:
            if job.result.ok:
                self.telemetry.finished(job.socket, job.call, job.result)
            else:
                self.telemetry.failed(job.socket, job.call, job.result)
        except Exception:
            log.exception(
                "could not report call %s on %s as finished", job.call.call_id, job.socket.name
            )
        return ACK

    # -- dead letters ----------------------------------------------------
    def dead_letter(self, socket: SocketSpec, letter: Letter) -> Verdict:
        """Set a message aside in ``socket``'s dead-letter queue; it is then acknowledged."""
        self._publisher().publish_to_queue(
            socket.route.dead_letter_queue, letter.body(), letter.headers
        )
        return ACK

    def _set_aside(self, socket: SocketSpec, delivery: KombuMessage, exc: Exception) -> Verdict:
        """Dead-letter a message the worker itself failed on; requeue it if even that fails."""
        body = delivery.body if isinstance(delivery.body, bytes) else str(delivery.body).encode()
        limits = self.admission.limits
        call: Message | None
        try:
            call = Message.decode(admit_body(body, delivery.headers, limits), limits)
        except MessageDecodeError:
            call = None
        letter = Letter(
            "worker-error",
            f"worker error: {type(exc).__name__}: {exc}",
            call,
            raw=None if call else kept_raw(body),
        )
        try:
            return self.dead_letter(socket, letter)
        except (BrokerUnavailable, OSError):
            time.sleep(self.options.backoff_s)
            return REQUEUE
