"""Assemble a worker from settings: its spec, backend, and telemetry sinks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pyfi.backend import open_backend
from pyfi.config import Settings
from pyfi.errors import InvalidValue
from pyfi.wiring import ProcessorSpec, load_processor
from pyfi.worker import heap
from pyfi.worker.telemetry import Sink, Telemetry
from pyfi.worker.worker import Worker, WorkerOptions

if TYPE_CHECKING:
    from pyfi.db.session import Database

log = logging.getLogger("pyfi.worker")


def build_worker(
    settings: Settings,
    database: Database,
    processor: str,
    options: WorkerOptions,
    *,
    record_signatures: bool = True,
) -> Worker:
    """A ready-to-run worker for ``processor``.

    Also records the signature of each socket's function on its task, which
    writes nothing when it is already recorded (and only warns if it fails).
    ``record_signatures=False`` leaves that to the caller, which can do it
    once the worker consumes (:func:`record_signatures_once_consuming`) so
    that queued calls do not wait on it.

    Raises
    ------
    InvalidValue
        The processor has no enabled sockets: there would be nothing to consume.
    """
    # A plain connection, not a session: the spec is read-only, and a session
    # would first ask the database who we are.
    with database.connect() as connection:
        spec = load_processor(connection, processor)
    worker = build_worker_from_spec(settings, spec, options)
    if record_signatures:
        _record_signatures(worker, database)
    return worker


def build_worker_from_spec(
    settings: Settings, spec: ProcessorSpec, options: WorkerOptions
) -> Worker:
    """A ready-to-run worker for a spec read elsewhere (by the agent that starts it).

    Raises
    ------
    InvalidValue
        The processor has no enabled sockets: there would be nothing to consume.
    """
    if not spec.sockets:
        raise InvalidValue(
            f"processor {spec.name!r} has no enabled sockets; add one with `flow add socket`"
        )
    if not options.concurrency:
        options = replace(options, concurrency=spec.concurrency)
    worker = Worker(
        settings,
        spec,
        options,
        backend=open_backend(settings.backend_url),
        telemetry=build_telemetry(
            settings,
            spec,
            record=options.record,
            events=options.events,
            freeze_heap=options.freeze_heap,
        ),
    )
    return worker


def record_signatures_once_consuming(
    worker: Worker, database: Database | Callable[[], Database]
) -> threading.Thread:
    """Record the worker's function signatures in the background, once it consumes.

    Recording reads each task and its arguments, and the functions' source
    files: work that no call needs, so it waits until consuming has begun
    and calls already queued do not wait for it.
    The thread is a daemon: a worker stopping straight away does not wait
    for it, and a record it does not finish is made on the next start.
    Afterwards the database's pooled connections are closed: the worker
    has no other use for them. ``database`` may be a function that opens it,
    so that a worker started from a spec imports no database code before it
    consumes.
    """

    def record() -> None:
        worker.ready.wait()
        opened = database() if callable(database) else database
        try:
            _record_signatures(worker, opened)
        except Exception:  # a thread's failure would only print; the worker must go on
            log.warning(
                "could not record the function signatures of processor %s",
                worker.spec.name,
                exc_info=True,
            )
        finally:
            opened.dispose()
            if worker.options.freeze_heap:
                heap.freeze("signatures recorded")

    thread = threading.Thread(target=record, name="pyfi-signatures", daemon=True)
    thread.start()
    return thread


def _record_signatures(worker: Worker, database: Database) -> None:
    # The worker holds the real functions now: record their signatures, so
    # that `flow validate` and `flow add plug` can check arguments against them.
    from pyfi.network.signature import record_processor_signatures

    record_processor_signatures(database, worker.spec, worker.functions)


def build_telemetry(
    settings: Settings,
    spec: ProcessorSpec,
    *,
    record: bool,
    events: bool,
    freeze_heap: bool = False,
) -> Telemetry:
    """Call records (batched into the database) and live events, each optional.

    ``freeze_heap``: the recorder's first write imports the database modules
    it needs; once it is done, they join the objects exempt from garbage
    collection (see :mod:`pyfi.worker.heap`).
    """
    sinks: list[Sink] = []
    closers: list[Any] = []
    if record:
        from pyfi.recorder import CallRecorder
        from pyfi.worker.sinks import RecordSink

        recorder = CallRecorder(
            settings.database_url,
            on_first_write=(lambda: heap.freeze("first calls recorded")) if freeze_heap else None,
        )
        sinks.append(RecordSink(recorder, {s.name: s.id for s in spec.sockets}))
        closers.append(recorder.close)
    if events:
        from pyfi.events import EventPublisher
        from pyfi.worker.sinks import EventSink

        publisher = EventPublisher(settings)
        publisher.watch_audience()
        sinks.append(EventSink(publisher, spec.name))
        closers.append(publisher.close)
    return Telemetry(spec.name, sinks, closers)
