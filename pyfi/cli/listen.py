"""`flow listen`: watch a processor's live events as they happen.

A sniffer for people and scripts: one line per event on stdout (readable, or
JSON with ``--json``), optionally handed to an *adaptor* function as well.
``--count`` and ``--timeout`` make it usable from scripts and tests; Ctrl-C
is the normal way out, so it exits 0 without a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any

import click

from pyfi.cli.context import CliContext, pass_flow
from pyfi.cli.render import note, printable
from pyfi.errors import AdaptorFailed, AdaptorNotFound
from pyfi.events import CHANNELS, GLOBAL_CHANNEL, EventSubscriber, LiveEvent

ANY_CHANNEL = "*"
Adaptor = Callable[[dict[str, Any]], object]


def load_adaptor(path: str) -> Adaptor:
    """Import ``module.function`` for ``--adaptor``.

    Raises
    ------
    AdaptorNotFound
        If the path has no dot, the module cannot be imported, or the
        attribute is missing or not callable.
    """
    module_name, _, function_name = path.rpartition(".")
    if not module_name or not function_name:
        raise AdaptorNotFound(f"adaptor {path!r} is not of the form module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdaptorNotFound(
            f"cannot import adaptor module {module_name!r}: {exc}; is its folder on PYTHONPATH?"
        ) from exc
    except Exception as exc:  # the module itself raised while being imported
        raise AdaptorNotFound(
            f"adaptor module {module_name!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise AdaptorNotFound(f"adaptor module {module_name!r} has no {function_name!r}")
    if not callable(function):
        raise AdaptorNotFound(f"adaptor {path!r} is not callable")
    adaptor: Adaptor = function
    return adaptor


def listen_patterns(name: str, channel: str | None) -> list[str]:
    """The subscription for ``--name``/``--channel``.

    ``global`` carries every event; a channel given with it is applied as a
    filter on the event's ``channel`` field instead (see :func:`wanted`).
    """
    if name == GLOBAL_CHANNEL:
        return [GLOBAL_CHANNEL]
    if channel is None:
        raise click.UsageError(
            f"--channel is required unless --name is {GLOBAL_CHANNEL}; "
            f"one of {', '.join(CHANNELS)} or {ANY_CHANNEL}"
        )
    if "." not in name:
        raise click.BadParameter(
            f"{name!r} is not a <queue>.<processor> room (e.g. pyfi.queue1.proc1) "
            f"nor {GLOBAL_CHANNEL}",
            param_hint="'-n' / '--name'",
        )
    return [f"{name}.{channel}"]


def wanted(event: LiveEvent, name: str, channel: str | None) -> bool:
    """Whether ``event`` passes the channel filter of a ``global`` listener."""
    return name != GLOBAL_CHANNEL or channel in (None, ANY_CHANNEL) or event.channel == channel


def format_event(event: LiveEvent) -> str:
    """One readable line: local time, room, channel, state, socket, call id (and a message).

    Every part but the time comes from whoever published the event: the line
    is printed with control characters escaped, so an event cannot drive the
    terminal it is shown on.
    """
    try:
        when = datetime.fromisoformat(event.date).astimezone().strftime("%H:%M:%S.%f")[:-3]
    except (ValueError, OverflowError):
        when = event.date
    line = (
        f"{when} {event.room} {event.channel:<6} {event.state:<8} "
        f"{event.socket or '-'} {event.call_id or '-'}"
    )
    message = (event.data or {}).get("message")
    return printable(f"{line} {message}" if message else line)


def _take(events: Iterator[LiveEvent], count: int | None) -> Iterator[LiveEvent]:
    for seen, event in enumerate(events, start=1):
        yield event
        if count is not None and seen >= count:
            return


@click.command("listen")
@click.option(
    "-n",
    "--name",
    required=True,
    metavar="ROOM",
    help="Room to listen to: <queue>.<processor> (e.g. pyfi.queue1.proc1), or global.",
)
@click.option(
    "-c",
    "--channel",
    type=click.Choice([*CHANNELS, ANY_CHANNEL]),
    help="Channel of the room; required unless --name is global (there it filters).",
)
@click.option(
    "-a",
    "--adaptor",
    metavar="MODULE.FUNC",
    help="Also call this function with each event as a dict.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after N events.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after this many seconds.",
)
@pass_flow
def listen(
    flow: CliContext,
    name: str,
    channel: str | None,
    adaptor: str | None,
    as_json: bool,
    count: int | None,
    timeout: float | None,
) -> None:
    """Print the live events of a processor as they happen (Ctrl-C to stop).

    \b
    Examples:
      flow listen --name pyfi.queue1.proc1 --channel task
      flow listen -n pyfi.queue1.proc1 -c '*' --json
      flow listen -n global -c error --adaptor mypkg.alerts.notify
    """
    patterns = listen_patterns(name, channel)
    handler = load_adaptor(adaptor) if adaptor else None
    subscriber = EventSubscriber(flow.settings)
    # Written directly and flushed once per message received, not per event:
    # click.echo asks the terminal whether it is one and flushes each line,
    # which was most of a busy listener's CPU.
    out = sys.stdout
    try:
        with _sigterm_stops():
            events = subscriber.subscribe(patterns, timeout=timeout, before_wait=out.flush)
            note(f"Listening to {', '.join(patterns)}")
            matching = (event for event in events if wanted(event, name, channel))
            for event in _take(matching, count):
                out.write((event.to_json() if as_json else format_event(event)) + "\n")
                if handler is not None:
                    _call(handler, adaptor or "", event)
            out.flush()
    except KeyboardInterrupt:
        with contextlib.suppress(OSError, ValueError):
            out.flush()  # the ordinary way to stop a sniffer
    except BrokenPipeError:
        _silence_stdout()  # `flow listen ... | head -3`: the reader is done, so are we
    finally:
        subscriber.close()


def _silence_stdout() -> None:
    # Python would otherwise report the broken pipe again while flushing at exit.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """Let SIGTERM stop a listener as Ctrl-C does, so its private queue is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _call(handler: Adaptor, path: str, event: LiveEvent) -> None:
    try:
        handler(event.to_dict())
    except Exception as exc:
        raise AdaptorFailed(
            f"adaptor {path} raised {type(exc).__name__}: {exc} "
            f"on the {event.state} event of call {event.call_id or '-'}"
        ) from exc
