"""Recording a socket function's real signature, so the network can be checked against it.

Plugs name target arguments before any code runs, so an argument row is first
only a name (:func:`pyfi.objects.lookup.argument_for`). When a worker starts it
holds the real functions: it records each one's parameters (position, kind,
whether a default exists) and its source on the task, and from then on
``flow validate`` and ``flow add plug`` can tell a typo from a parameter.

Workers record on every start, and every write to a task or an argument is
announced to every agent (:mod:`pyfi.db.changes`), so recording writes nothing
at all when what is stored already matches.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyfi.errors import FlowError, first_line

if TYPE_CHECKING:  # clients inspect functions too, and need no database code for it
    from sqlalchemy.orm import Session

    from pyfi.db import models
    from pyfi.db.session import Database
    from pyfi.wiring import ProcessorSpec

log = logging.getLogger("pyfi.worker")

# Sources are kept for people to read, not to run: a generated module-sized
# function must not bloat every task row.
MAX_SOURCE_BYTES = 64 * 1024

# Kinds a plug can deliver to by name (it passes the value as a keyword).
NAMED_KINDS = frozenset({"positional_or_keyword", "keyword_only"})

_Stored = tuple[int | None, str | None, bool | None]


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter of a function, as stored in an argument row."""

    name: str
    position: int
    kind: str  # inspect.Parameter kind, lower case: "positional_or_keyword", "var_keyword", ...
    required: bool  # no default; never true for *args and **kwargs


def parameters_of(function: Callable[..., Any]) -> tuple[ParameterSpec, ...] | None:
    """The parameters of ``function`` in order, or None when Python cannot tell.

    Some builtins and C extensions have no introspectable signature; their
    tasks simply stay unchecked.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return tuple(
        ParameterSpec(
            name=parameter.name,
            position=position,
            kind=parameter.kind.name.lower(),
            required=parameter.default is inspect.Parameter.empty
            and parameter.kind not in variadic,
        )
        for position, parameter in enumerate(signature.parameters.values())
    )


def source_of(function: Callable[..., Any]) -> str | None:
    """The source text of ``function``, or None when it has none on disk."""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return None


def cap_source(source: str) -> str:
    """``source`` cut to :data:`MAX_SOURCE_BYTES` of UTF-8, never mid-character."""
    encoded = source.encode("utf-8")
    if len(encoded) <= MAX_SOURCE_BYTES:
        return source
    return encoded[:MAX_SOURCE_BYTES].decode("utf-8", errors="ignore")


def record_signature(
    session: Session,
    task: models.Task,
    parameters: Sequence[ParameterSpec],
    source: str | None = None,
) -> bool:
    """Store ``parameters`` (and ``source``) as ``task``'s inspected signature.

    Argument rows are matched by name: a parameter's row is created or gets
    its position, kind and required flag; a row the signature lacks (one only
    a plug named) stays, with those three set to NULL, so the plug keeps its
    binding and validation can point at it. ``source`` None leaves the stored
    source as it is.

    Parameters
    ----------
    session
        The caller's transaction; nothing is committed here.
    task
        The task whose function was inspected.
    parameters
        Its signature, from :func:`parameters_of`.
    source
        The function's source, capped at 64 KiB.

    Returns
    -------
    bool
        True if anything was written; False (and the session untouched) when
        the stored signature and source already match.
    """
    from pyfi.db import models

    wanted: dict[str, _Stored] = {p.name: (p.position, p.kind, p.required) for p in parameters}
    capped = cap_source(source) if source is not None else None
    existing = {argument.name: argument for argument in task.arguments}
    stored = {
        name: (argument.position, argument.kind, argument.required)
        for name, argument in existing.items()
    }
    expected = {name: wanted.get(name, (None, None, None)) for name in stored} | wanted
    unchanged = (
        task.inspected is not None
        and stored == expected
        and (capped is None or capped == task.source)
    )
    if unchanged:
        return False
    for name, (position, kind, required) in expected.items():
        argument = existing.get(name)
        if argument is None:
            argument = models.Argument(name=name, task=task)
            session.add(argument)
        if (argument.position, argument.kind, argument.required) != (position, kind, required):
            argument.position, argument.kind, argument.required = position, kind, required
    task.inspected = datetime.now(UTC)
    if capped is not None and capped != task.source:
        task.source = capped
    return True


def record_processor_signatures(
    database: Database, spec: ProcessorSpec, functions: Mapping[str, Callable[..., Any]]
) -> None:
    """Record the signature and source of each socket's function, in one transaction.

    ``functions`` is keyed by socket name (as :func:`pyfi.worker.registry.resolve`
    returns them). A worker can serve its calls without this record, so a
    database failure is logged as a warning and never raised.

    The workers of a processor start together (an agent starts one per CPU)
    and each records the same signatures: one of two that add the same
    argument at once finds the other's row in its way and tries again,
    which then reads that row and has nothing left to write.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        recorded = _record_retrying_a_collision(database, spec, functions)
    except (FlowError, SQLAlchemyError) as exc:
        log.warning(
            "could not record the function signatures of processor %s (validation will "
            "treat its sockets as unchecked): %s",
            spec.name,
            first_line(exc),
        )
        return
    if recorded:
        log.info("recorded the signatures of %s of processor %s", ", ".join(recorded), spec.name)


def _record_retrying_a_collision(
    database: Database, spec: ProcessorSpec, functions: Mapping[str, Callable[..., Any]]
) -> list[str]:
    """:func:`_record_all` in a transaction; once more if another worker's rows got in the way."""
    from sqlalchemy.exc import IntegrityError

    try:
        with database.transaction() as session:
            return _record_all(session, spec, functions)
    except IntegrityError:
        with database.transaction() as session:
            return _record_all(session, spec, functions)


def _record_all(
    session: Session, spec: ProcessorSpec, functions: Mapping[str, Callable[..., Any]]
) -> list[str]:
    """The names of the tasks whose record changed."""
    from pyfi.db import models

    recorded: list[str] = []
    done: set[uuid.UUID] = set()
    for socket_spec in spec.sockets:
        function = functions.get(socket_spec.name)
        socket = session.get(models.Socket, uuid.UUID(socket_spec.id))
        if function is None or socket is None or socket.task_id in done:
            continue
        done.add(socket.task_id)
        parameters = parameters_of(function)
        if parameters is None:
            continue
        if record_signature(session, socket.task, parameters, source_of(function)):
            recorded.append(socket.task.name)
    return recorded
