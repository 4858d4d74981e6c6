"""Declaring a network in Python: ``@processor`` classes, ``@socket`` and ``@plug`` functions.

When are declarations written?

- Loaded by ``flow compose apply net.py`` (or
  :func:`pyfi.network.module.load_network`), a file writes nothing while it
  imports: every declaration is collected and the whole network is applied
  in one transaction afterwards, or refused as a whole.
- Run as a script (``python net.py``), each declaration is applied as soon as
  it is complete, on the default connection (:mod:`pyfi.client.connection`):
  a ``@processor`` class together with the ``@socket``/``@plug`` functions of
  its body, in one transaction; a module-level ``@socket`` or ``@plug`` in a
  transaction of its own. A plug's target must then be declared above it.

A class body runs before its class decorator, so a ``@socket`` inside a class
cannot be applied when it is decorated: it is held until the class's
``@processor`` runs, which also gives it its processor when it names none.
Functions inside a class body are recognised by their ``__qualname__``
(``ProcessorB.do_this``).

Applying is idempotent: declaring an unchanged network again writes nothing.
The decorated functions are returned unchanged and stay callable as normal.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from pyfi.errors import InvalidValue
from pyfi.network.declare import (
    Declaration,
    Network,
    PlugDecl,
    ProcessorDecl,
    QueueDecl,
    SocketDecl,
    apply,
)
from pyfi.network.module import Pending, check_nothing_pending, current_collector

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

# Attributes the decorators leave on what they decorate.
SOCKET_ATTR = "__pyfi_socket__"
PLUGS_ATTR = "__pyfi_plugs__"
PROCESSOR_ATTR = "__pyfi_processor__"

QueueRef = Mapping[str, Any] | str


class ProcessorBase:
    """Base class of the classes that ``@processor`` declares.

    It adds no behaviour: it marks a class as a processor declaration, whose
    body groups the processor's ``@socket`` functions.
    """


# Class-body declarations of scripts run outside any collector.
_immediate_pending: Pending = {}
_immediate_lock = threading.Lock()


def processor(
    name: str,
    gitrepo: str,
    module: str,
    concurrency: int | None = None,
    *,
    user: Any = None,
    **fields: Any,
) -> Callable[[C], C]:
    """Class decorator: declare the processor ``name`` and the sockets of the class body.

    Parameters
    ----------
    name, gitrepo, module, concurrency:
        As for ``flow add processor``.
    user:
        A pyfi user name (or :data:`pyfi.client.user.USER`) to record on the row
        when such a user exists.
    fields:
        Any other processor field: ``branch``, ``hostname``, ``beat``, ``commit``, ...

    Raises
    ------
    InvalidValue
        An unknown field or a value of the wrong type (at decoration time).
    """
    given = {"gitrepo": gitrepo, "module": module, **fields}
    if concurrency is not None:
        given["concurrency"] = concurrency
    declaration = ProcessorDecl(name, given, user=name_of(user, "user"), origin=_caller())

    def decorate(cls: C) -> C:
        with _pending_lock():
            held = _pending().pop((cls.__module__, cls.__qualname__), [])
        body = [
            replace(d, processor=name) if isinstance(d, SocketDecl) and d.processor is None else d
            for d in held
        ]
        _emit([declaration, *body])
        setattr(cls, PROCESSOR_ATTR, declaration)
        return cls

    return decorate


def socket(
    name: str,
    processor: Any = None,
    arguments: bool = False,
    queue: QueueRef | None = None,
    task: str | None = None,
    interval: int | None = None,
    cron: str | None = None,
    wait: bool | None = None,
    beat: bool | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    *,
    user: Any = None,
) -> Callable[[F], F]:
    """Function decorator: declare the socket ``name`` fronting the decorated function.

    Parameters
    ----------
    processor:
        The processor's name (or an object with ``.name``); default: the
        ``@processor`` of the enclosing class.
    arguments:
        True records the function's parameters as the task's signature, so
        that plugs and ``wait`` are checked against them.
    queue:
        ``"name"`` or ``{"name": ..., "message_ttl": ..., ...}``; queue fields
        given in the dict are applied to the queue too.
    task:
        The function's name in the processor's module; default ``__name__``.
    interval, cron:
        The socket's schedule: every ``interval`` seconds, or a cron expression.
    beat:
        Accepted for compatibility and ignored: a socket with ``interval`` or
        ``cron`` is fired by the agents' scheduler (see the README's
        Schedules), whatever the processor's ``beat`` field says.
    """
    if beat is not None and not isinstance(beat, bool):
        raise InvalidValue(f"socket {name!r}: beat must be true or false, not {beat!r}")
    origin = _caller()

    def decorate(func: F) -> F:
        from pyfi.network.signature import parameters_of

        fields = {"interval": interval, "cron": cron, "wait": wait}
        fields |= {"description": description, "enabled": enabled}
        declarations = socket_declarations(
            name,
            processor=processor,
            queue=queue,
            task=task if task is not None else func.__name__,
            fields={k: v for k, v in fields.items() if v is not None},
            parameters=parameters_of(func) if arguments else None,
            user=user,
        )
        for declaration in declarations:
            declaration.origin = origin
        setattr(func, SOCKET_ATTR, declarations[-1])
        _declare(func, declarations)
        return func

    return decorate


def plug(
    name: str,
    target: Any,
    queue: QueueRef,
    argument: str | None = None,
    type: str = "RESULT",
    loop: bool = False,
    enabled: bool | None = None,
    description: str | None = None,
    *,
    user: Any = None,
) -> Callable[[F], F]:
    """Function decorator, placed above ``@socket``: a plug from that socket to ``target``.

    Parameters
    ----------
    target:
        The target socket's name, an object with ``.name``, or a ``@socket``
        function.
    queue:
        ``"name"`` or a dict, as for :func:`socket`.
    argument:
        The target argument to deliver to; None delivers the whole result.
    type:
        ``RESULT`` or ``ERROR``: which outcome of the source the plug carries.
    loop:
        True when the plug closes a cycle on purpose.

    Raises
    ------
    InvalidValue
        The function has no ``@socket`` below this decorator.
    """
    origin = _caller()

    def decorate(func: F) -> F:
        source = getattr(func, SOCKET_ATTR, None)
        if not isinstance(source, SocketDecl):
            raise InvalidValue(
                f"@plug {name!r} on {getattr(func, '__qualname__', func)!r} needs a @socket "
                "below it: a plug's source is the socket of the function it decorates"
            )
        fields = {"enabled": enabled, "description": description}
        queue_declaration = queue_decl(queue, f"plug {name!r}")
        queue_declaration.origin = origin
        declaration = PlugDecl(
            name,
            source=source.name,
            target=name_of(target, "target"),
            queue=queue_declaration.name,
            argument=argument,
            type=type,
            loop=loop,
            fields={k: v for k, v in fields.items() if v is not None},
            user=name_of(user, "user"),
            origin=origin,
        )
        setattr(func, PLUGS_ATTR, (*getattr(func, PLUGS_ATTR, ()), declaration))
        _declare(func, [queue_declaration, declaration])
        return func

    return decorate


def socket_declarations(
    name: str,
    *,
    processor: Any = None,
    queue: QueueRef | None = None,
    task: str | None = None,
    fields: Mapping[str, Any] | None = None,
    parameters: Any = None,
    user: Any = None,
) -> list[Declaration]:
    """The queue (if named) and socket declarations of one socket, socket last."""
    declarations: list[Declaration] = []
    queue_name = None
    if queue is not None:
        queue_declaration = queue_decl(queue, f"socket {name!r}")
        declarations.append(queue_declaration)
        queue_name = queue_declaration.name
    declarations.append(
        SocketDecl(
            name,
            processor=name_of(processor, "processor"),
            task=task,
            queue=queue_name,
            fields=dict(fields or {}),
            parameters=parameters,
            user=name_of(user, "user"),
        )
    )
    return declarations


def queue_decl(queue: Any, owner: str) -> QueueDecl:
    """The queue declaration of ``queue``: a name, or a dict with ``name`` and queue fields."""
    if isinstance(queue, str):
        return QueueDecl(queue)
    if isinstance(queue, Mapping):
        fields = dict(queue)
        queue_name = fields.pop("name", None)
        if not isinstance(queue_name, str):
            raise InvalidValue(f"{owner}: a queue dict needs a 'name', e.g. {{'name': 'q1'}}")
        return QueueDecl(queue_name, fields)
    raise InvalidValue(f"{owner}: queue must be a name or a dict with a 'name', not {queue!r}")


def name_of(reference: Any, role: str) -> str | None:
    """The name ``reference`` stands for: a string, a ``@socket`` function or any ``.name``."""
    if reference is None or isinstance(reference, str):
        return reference
    declared = getattr(reference, SOCKET_ATTR, None)
    if isinstance(declared, SocketDecl):
        return declared.name
    named = getattr(reference, "name", None)
    if isinstance(named, str):
        return named
    raise InvalidValue(f"{role} must be a name or an object with a .name, not {reference!r}")


def _caller() -> str | None:
    """``FILE:LINE`` of the decorator's use, for errors found when it is applied."""
    frame = inspect.currentframe()
    caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
    if caller is None:
        return None
    path = Path(caller.f_code.co_filename)
    with contextlib.suppress(ValueError):  # shown relative to where the user is, if inside
        path = path.relative_to(Path.cwd())
    return f"{path}:{caller.f_lineno}"


def _declare(func: Any, declarations: list[Declaration]) -> None:
    """Hold class-body declarations for their class; emit the others now."""
    qualname = getattr(func, "__qualname__", "")
    owner = qualname.rpartition(".")[0]
    if owner and not owner.endswith("<locals>"):
        with _pending_lock():
            _pending().setdefault((func.__module__, owner), []).extend(declarations)
        return
    _emit(declarations)


def _emit(declarations: Iterable[Declaration]) -> None:
    """Add to the collecting network, or apply at once on the default connection."""
    collector = current_collector()
    if collector is not None:
        collector.network.extend(declarations)
        return
    from pyfi.client.connection import database

    network = Network.of(declarations)
    with database().transaction() as session:
        apply(session, network)


def _pending() -> Pending:
    collector = current_collector()
    return collector.pending if collector is not None else _immediate_pending


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def _pending_lock() -> Any:
    # A collector is private to its context; the script-mode store is shared.
    return _NoLock() if current_collector() is not None else _immediate_lock


@atexit.register
def _warn_unapplied() -> None:
    """In a script, say at exit which class-body sockets no @processor ever applied."""
    try:
        check_nothing_pending(_immediate_pending)
    except InvalidValue as exc:
        print(f"pyfi: warning: {exc.message} (nothing of it was written)", file=sys.stderr)
