"""`flow worker start`: run the sockets of one processor in this process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pyfi.cli.context import CliContext, FlowGroup, configure_logging, pass_flow

if TYPE_CHECKING:
    from pyfi.worker.signals import LifecycleSignals
    from pyfi.worker.worker import Worker


@click.group("worker", cls=FlowGroup)
def worker_group() -> None:
    """Run pyfi workers."""


@worker_group.command("start")
@click.option("-p", "--processor", "processor_name", default=None, help="Processor to serve.")
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve the processor described in this file (written by the agent that starts "
    "the worker) instead of reading the model: the worker consumes without first "
    "loading any database code.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Calls run at once [default: the processor's concurrency].",
)
@click.option(
    "--path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The processor's checkout: its module is loaded from a file in this folder "
    "(or its src/ folder), never from the installed packages.",
)
@click.option(
    "--allow-installed",
    "allow_installed",
    multiple=True,
    metavar="PACKAGE",
    help="Without --path: a top-level installed package the processor's module may be "
    "imported from (repeatable). The standard library and pyfi are never allowed.",
)
@click.option(
    "--result-ttl",
    type=click.IntRange(min=1),
    default=24 * 3600,
    show_default=True,
    help="Seconds results are kept.",
)
@click.option(
    "--join-ttl",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="Seconds a partly delivered join waits for its other arguments.",
)
@click.option(
    "--record/--no-record",
    default=True,
    show_default=True,
    help="Record calls and events in the database.",
)
@click.option(
    "--events/--no-events",
    default=True,
    show_default=True,
    help="Publish live events for `flow listen`.",
)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    envvar="PYFI_BROKER_HEARTBEAT",
    help="AMQP heartbeat interval in seconds, 0 for none: a broker gone silent is "
    "noticed within two [env PYFI_BROKER_HEARTBEAT].",
)
@click.option(
    "--reconnect-for",
    "reconnect_for_s",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds to keep trying a lost broker before exiting [default: for ever].",
)
@pass_flow
def start(
    flow: CliContext,
    processor_name: str | None,
    spec_file: Path | None,
    concurrency: int | None,
    path: Path | None,
    allow_installed: tuple[str, ...],
    result_ttl: int,
    join_ttl: int,
    record: bool,
    events: bool,
    heartbeat_s: int,
    reconnect_for_s: int | None,
) -> None:
    """Consume every socket of a processor until stopped (SIGTERM drains, then exits).

    SIGUSR1 pauses and SIGUSR2 resumes consuming from the command's first
    moment: a pause that comes while the worker starts is honoured once it
    runs. A lost broker is reconnected; every exit is logged with its cause.
    """
    from pyfi.worker.signals import LifecycleSignals

    signals = LifecycleSignals()
    signals.install()  # first: a pause must not kill a worker still starting
    try:
        _start(
            flow,
            signals,
            processor_name,
            spec_file,
            concurrency=concurrency,
            path=path,
            allow_installed=tuple(allow_installed),
            result_ttl_s=result_ttl,
            join_ttl_s=join_ttl,
            record=record,
            events=events,
            heartbeat_s=heartbeat_s,
            reconnect_for_s=reconnect_for_s,
        )
    finally:
        signals.restore()


def _start(
    flow: CliContext,
    signals: LifecycleSignals,
    processor_name: str | None,
    spec_file: Path | None,
    *,
    concurrency: int | None,
    **options: Any,
) -> None:
    """Check the start, then run the worker as a service until it stops."""
    from pyfi.auth.actor import serving_as

    if spec_file is None and processor_name is None:
        raise click.UsageError(
            "name the processor to serve with --processor (or hand over its spec with --spec)"
        )
    # A worker is a service: it never acts as (or stops on the expiry of) a person's login.
    flow.without_login()
    configure_logging(flow)
    if spec_file is None:  # with --spec an agent hands its workers their spec: it was checked
        _check_start(flow, processor_name or "")
    with serving_as(f"worker {spec_file.stem if spec_file else processor_name}") as service:
        flow.database.act_as(service)
        _run(flow, signals, processor_name, spec_file, concurrency=concurrency, **options)


def _run(
    flow: CliContext,
    signals: LifecycleSignals,
    processor_name: str | None,
    spec_file: Path | None,
    *,
    concurrency: int | None,
    **options: Any,
) -> None:
    """Build the worker, hand the signals over to it, and run it until it stops."""
    from pyfi.errors import InvalidValue
    from pyfi.wiring import spec_from_json
    from pyfi.worker.factory import (
        build_worker,
        build_worker_from_spec,
        record_signatures_once_consuming,
    )
    from pyfi.worker.worker import WorkerOptions

    worker_options = WorkerOptions(
        concurrency=concurrency or 0,
        install_signals=False,  # installed already: handed over below
        freeze_heap=True,  # this process is the worker's alone
        **options,
    )
    if spec_file is not None:
        spec = spec_from_json(spec_file.read_text())
        if processor_name is not None and processor_name != spec.name:
            raise InvalidValue(
                f"{spec_file} describes processor {spec.name!r}, not {processor_name!r}"
            )
        worker = build_worker_from_spec(flow.settings, spec, worker_options)
        record_signatures_once_consuming(worker, lambda: flow.database)
    else:
        assert processor_name is not None
        worker = build_worker(
            flow.settings, flow.database, processor_name, worker_options, record_signatures=False
        )
        flow.database.dispose()  # the worker's hot path never uses this connection
        record_signatures_once_consuming(worker, flow.database)
    _say_when_consuming(worker)
    signals.hand_over(worker)
    worker.run()


def _check_start(flow: CliContext, name: str) -> None:
    """Check START_AGENT as whoever started the worker (the process then serves).

    A worker is what an agent runs; starting one by hand needs the same right.
    """
    from pyfi.auth.guard import Target, require
    from pyfi.db.enums import Right

    with flow.transaction() as session:
        require(session, Right.START_AGENT, "start workers", Target("processor", name))


def _say_when_consuming(worker: Worker) -> None:
    """Create the agent's ready file (``PYFI_READY_FILE``) once the worker consumes.

    The agent replaces a worker that dies after this at once, and backs off
    only for one that dies before it (a crash loop).
    """
    import contextlib
    import os
    import threading

    from pyfi.config import ENV_READY_FILE

    ready_file = os.environ.get(ENV_READY_FILE)
    if not ready_file:
        return

    def touch() -> None:
        worker.ready.wait()
        with contextlib.suppress(OSError):  # the agent's folder is gone: it is gone too
            Path(ready_file).touch()

    threading.Thread(target=touch, name="pyfi-ready", daemon=True).start()
