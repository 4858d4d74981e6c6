"""Assemble a worker from settings: its spec, backend, and telemetry sinks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pyfi.backend import open_backend
from pyfi.config import Settings
from pyfi.db import models
from pyfi.db.session import Database
from pyfi.errors import InvalidValue
from pyfi.network.signature import record_processor_signatures
from pyfi.objects.lookup import get_by_name
from pyfi.wiring import ProcessorSpec, load_processor
from pyfi.worker.telemetry import Sink, Telemetry
from pyfi.worker.worker import Worker, WorkerOptions


def build_worker(
    settings: Settings, database: Database, processor: str, options: WorkerOptions
) -> Worker:
    """A ready-to-run worker for ``processor``.

    Also records the signature of each socket's function on its task, which
    writes nothing when it is already recorded (and only warns if it fails).

    Raises
    ------
    InvalidValue
        The processor has no enabled sockets: there would be nothing to consume.
    """
    with database.transaction() as session:
        spec = load_processor(session, processor)
        default_concurrency = get_by_name(session, models.Processor, processor).concurrency
    if not spec.sockets:
        raise InvalidValue(
            f"processor {processor!r} has no enabled sockets; add one with `flow add socket`"
        )
    if not options.concurrency:
        options = replace(options, concurrency=default_concurrency)
    worker = Worker(
        settings,
        spec,
        options,
        backend=open_backend(settings.backend_url),
        telemetry=build_telemetry(settings, spec, record=options.record, events=options.events),
    )
    # The worker holds the real functions now: record their signatures, so
    # that `flow validate` and `flow add plug` can check arguments against them.
    record_processor_signatures(database, spec, worker.functions)
    return worker


def build_telemetry(
    settings: Settings, spec: ProcessorSpec, *, record: bool, events: bool
) -> Telemetry:
    """Call records (batched into the database) and live events, each optional."""
    sinks: list[Sink] = []
    closers: list[Any] = []
    if record:
        from pyfi.recorder import CallRecorder
        from pyfi.worker.sinks import RecordSink

        recorder = CallRecorder(settings.database_url)
        sinks.append(RecordSink(recorder, {s.name: s.id for s in spec.sockets}))
        closers.append(recorder.close)
    if events:
        from pyfi.events import EventPublisher
        from pyfi.worker.sinks import EventSink

        publisher = EventPublisher(settings)
        sinks.append(EventSink(publisher, spec.name))
        closers.append(publisher.close)
    return Telemetry(spec.name, sinks, closers)
