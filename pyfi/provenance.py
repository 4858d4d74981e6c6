"""Provenance: which call caused which, read back from the ``calls`` table.

Every call row carries ``tracking_id`` (the flow run it belongs to) and
``parent_id`` (the call whose result caused it). From those two columns this
module rebuilds three views of a run:

* :func:`call_tree`, the calls a call caused, recursively;
* :func:`call_graph`, the whole tree the call sits in, from its root down;
* :func:`flow_calls` and :func:`tracking_calls`, every call of the run, in order.

Provenance is scoped to one flow run: a call's parent and children are looked
for among the calls of its own tracking id. That lets each view load the whole
run in one query and build the tree in memory, whatever its size, instead of
one query per level or per call.

``parent_id`` is not a foreign key (records land in batches, children before
parents), so the data may be incomplete or plain wrong: a parent that was
never recorded ends the walk upwards, and a cycle is cut where it closes, so
no call appears twice and no walk runs forever. Everything here is iterative,
so a chain thousands of calls deep does not hit Python's recursion limit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pyfi.auth.guard import Target, require
from pyfi.db import models
from pyfi.db.enums import CallState, EventName, Right
from pyfi.db.serialize import json_value
from pyfi.errors import InvalidValue, ObjectNotFound

NOT_FOUND_HINT = "see `flow ls calls` for recent ones"


@dataclass(frozen=True)
class CallNode:
    """One call and the calls it caused, detached from any database session.

    ``name`` is the socket's name when the call ran; ``socket`` is the name of
    the socket it refers to now, or ``None`` once that socket is deleted.
    Ids are strings, as in :class:`pyfi.message.Message`.
    """

    id: str
    name: str
    socket: str | None
    state: CallState
    tracking_id: str
    parent_id: str | None
    started: datetime | None
    finished: datetime | None
    error: str | None
    # Left out of repr: a deep tree's nested repr would be unreadable, and
    # past a few hundred levels it would exceed the recursion limit.
    children: tuple[CallNode, ...] = field(default=(), repr=False)

    @property
    def duration(self) -> timedelta | None:
        """How long the call ran, once it has both started and finished."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def walk(self) -> Iterator[CallNode]:
        """This node and every descendant, depth first, parents before children."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def find(self, call_id: str) -> CallNode | None:
        """The node of ``call_id`` in this tree, if it is there."""
        return next((node for node in self.walk() if node.id == call_id), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary: ISO timestamps, enum values, nested ``children``."""
        done: dict[int, dict[str, Any]] = {}
        # Children before parents, without recursion (see the module docstring).
        for node in reversed(list(self.walk())):
            done[id(node)] = {
                "id": node.id,
                "name": node.name,
                "socket": node.socket,
                "state": json_value(node.state),
                "tracking_id": node.tracking_id,
                "parent_id": node.parent_id,
                "started": json_value(node.started),
                "finished": json_value(node.finished),
                "duration_s": _seconds(node.duration),
                "error": node.error,
                "children": [done.pop(id(child)) for child in node.children],
            }
        return done[id(self)]


def call_tree(session: Session, call_id: str | uuid.UUID) -> CallNode:
    """The calls ``call_id`` caused, recursively: its forward tree.

    Parameters
    ----------
    session:
        An open session on the meta-model database.
    call_id:
        The call to start from.

    Returns
    -------
    CallNode
        The call, whose children are the calls with it as their parent (in
        the same flow run), ordered by when they started, recursively.

    Raises
    ------
    InvalidValue
        ``call_id`` is not a UUID.
    ObjectNotFound
        No call has that id.
    """
    require(session, Right.READ, "read calls", Target("call", str(call_id)))
    wanted = parse_id(call_id, "call id")
    rows = _load_run(session, wanted)
    return _build(_Run(rows), wanted)


def call_graph(session: Session, call_id: str | uuid.UUID) -> tuple[CallNode, str]:
    """The whole tree ``call_id`` belongs to, and which of its nodes was asked for.

    The parent links are followed up to the root (the first call with no
    parent, or whose parent was never recorded in the same flow run), and the
    forward tree of that root is built.

    Parameters
    ----------
    session:
        An open session on the meta-model database.
    call_id:
        The call to find the graph of.

    Returns
    -------
    tuple[CallNode, str]
        The root's tree, and the id of the asked call (the focus), so that a
        renderer can mark it.

    Raises
    ------
    InvalidValue
        ``call_id`` is not a UUID.
    ObjectNotFound
        No call has that id.
    """
    require(session, Right.READ, "read calls", Target("call", str(call_id)))
    wanted = parse_id(call_id, "call id")
    run = _Run(_load_run(session, wanted))
    return _build(run, run.root_of(wanted)), str(wanted)


def flow_calls(session: Session, call_id: str | uuid.UUID) -> list[models.Call]:
    """Every call of the flow run ``call_id`` belongs to, in the order they started.

    Parameters
    ----------
    session:
        An open session on the meta-model database.
    call_id:
        Any call of the run.

    Returns
    -------
    list[models.Call]
        The calls, bound to ``session``, ordered as :func:`tracking_calls` orders them.

    Raises
    ------
    InvalidValue
        ``call_id`` is not a UUID.
    ObjectNotFound
        No call has that id.
    """
    require(session, Right.READ, "read calls", Target("call", str(call_id)))
    wanted = parse_id(call_id, "call id")
    query = select(models.Call).where(models.Call.tracking_id == _tracking_of(wanted))
    calls = list(session.scalars(query))
    if not calls:
        raise _not_found(call_id)
    return sorted(calls, key=lambda call: _order(call.started, call.created, call.id))


def tracking_calls(session: Session, tracking_id: str | uuid.UUID) -> list[models.Call]:
    """Every call of one flow run, in the order they started.

    A call that has not started yet sorts by when it was first recorded;
    ties are broken by that time, then by id, so the order is stable.

    Parameters
    ----------
    session:
        An open session on the meta-model database.
    tracking_id:
        The flow run.

    Returns
    -------
    list[models.Call]
        The calls, bound to ``session``; empty for a run nothing was recorded
        of (yet: records are written in batches).

    Raises
    ------
    InvalidValue
        ``tracking_id`` is not a UUID.
    """
    require(session, Right.READ, "read calls", Target("call", str(tracking_id)))
    tracking = parse_id(tracking_id, "tracking id")
    calls = session.scalars(select(models.Call).where(models.Call.tracking_id == tracking))
    return sorted(calls, key=lambda call: _order(call.started, call.created, call.id))


# The routine steps a call row's timestamps stand for: (event name, column, note).
_ROUTINE_STEPS = (
    (EventName.RECEIVED, "received", "Received task {name}"),
    (EventName.PRERUN, "started", "Prerun for task {name}"),
    (EventName.POSTRUN, "finished", "Postrun for task {name}"),
)


def call_events(call: models.Call) -> list[dict[str, Any]]:
    """The lifecycle of ``call`` as event records, oldest first.

    Workers write event rows only for retries and failures; the routine steps
    (received, prerun, postrun) are read from the call's own timestamps and
    shown as events with no ``id``. Each timestamp holds the latest attempt,
    so a retried call shows its retries and then its last run. A step stored
    as a row (history recorded before timestamps replaced rows) is not shown twice.
    """
    stored = [
        {column.key: getattr(event, column.key) for column in models.Event.__table__.columns}
        for event in call.events
    ]
    names = {row["name"] for row in stored}
    for event, column, note in _ROUTINE_STEPS:
        at = getattr(call, column)
        if at is None or event in names:
            continue
        if event is EventName.POSTRUN and call.state is not CallState.FINISHED:
            continue  # a failed call "finished" too; its failure event tells how
        stored.append(
            {
                "id": None,
                "name": event,
                "note": note.format(name=call.name),
                "owner": call.owner,
                "created": at,
                "call_id": call.id,
            }
        )
    return sorted(stored, key=lambda row: row["created"])


def count_children(session: Session, call: models.Call) -> int:
    """How many calls ``call`` caused directly, within its flow run."""
    query = (
        select(func.count())
        .select_from(models.Call)
        .where(models.Call.parent_id == call.id)
        .where(models.Call.tracking_id == call.tracking_id)
        .where(models.Call.id != call.id)
    )
    return int(session.scalar(query) or 0)


def tree_json(root: CallNode, *, focus: str | None = None, indent: int = 2) -> str:
    """``root.to_dict()`` as indented JSON, for trees of any depth.

    :func:`json.dumps` recurses once per nesting level and gives up past a
    few hundred levels; this writer keeps its own stack. With ``focus`` the
    result is ``{"focus": focus, "root": tree}``, the shape of a call graph.
    """
    data: Any = root.to_dict() if focus is None else {"focus": focus, "root": root.to_dict()}
    return dumps_deep(data, indent=indent)


def dumps_deep(data: Any, *, indent: int = 2) -> str:
    """Like ``json.dumps(data, indent=indent)`` for JSON-ready data, without recursion."""
    parts: list[str] = []
    # A work item is text to emit as is, or a (value, level) pair to encode.
    stack: list[str | tuple[Any, int]] = [(data, 0)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        value, level = item
        if isinstance(value, dict | list | tuple) and value:
            inner = "\n" + " " * (indent * (level + 1))
            is_dict = isinstance(value, dict)
            work: list[str | tuple[Any, int]] = ["{" if is_dict else "["]
            pairs = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for index, (key, child) in enumerate(pairs):
                key_text = f"{json.dumps(str(key))}: " if is_dict else ""
                work.append(("," if index else "") + inner + key_text)
                work.append((child, level + 1))
            work.append("\n" + " " * (indent * level) + ("}" if is_dict else "]"))
            stack.extend(reversed(work))
        elif isinstance(value, dict):
            parts.append("{}")
        elif isinstance(value, list | tuple):
            parts.append("[]")
        else:
            parts.append(json.dumps(json_value(value)))
    return "".join(parts)


def parse_id(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """``value`` as a UUID, or a one-line user error naming ``what`` it should be."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidValue(f"{value!r} is not a valid {what}; expected a UUID") from None


class _Row(NamedTuple):
    id: uuid.UUID
    name: str
    socket: str | None
    state: CallState
    tracking_id: uuid.UUID
    parent_id: uuid.UUID | None
    started: datetime | None
    finished: datetime | None
    error: str | None
    created: datetime


class _Run:
    """The calls of one flow run, indexed by id and by parent."""

    def __init__(self, rows: Sequence[_Row]) -> None:
        self.rows = {row.id: row for row in rows}
        self.children: dict[uuid.UUID, list[uuid.UUID]] = {}
        for row in sorted(rows, key=lambda r: _order(r.started, r.created, r.id)):
            parent = row.parent_id
            if parent is not None and parent != row.id and parent in self.rows:
                self.children.setdefault(parent, []).append(row.id)

    def root_of(self, call_id: uuid.UUID) -> uuid.UUID:
        """The highest ancestor of ``call_id`` that was recorded, stopping at a cycle."""
        current, seen = call_id, {call_id}
        while True:
            parent = self.rows[current].parent_id
            if parent is None or parent not in self.rows or parent in seen:
                return current
            seen.add(parent)
            current = parent


def _build(run: _Run, root: uuid.UUID) -> CallNode:
    """The forward tree of ``root``, each call at most once, built without recursion."""
    order: list[uuid.UUID] = []
    kept: dict[uuid.UUID, list[uuid.UUID]] = {}
    seen = {root}
    stack = [root]
    while stack:
        current = stack.pop()
        order.append(current)
        # A call has one parent, so only a cycle can lead back to a seen call.
        mine = [child for child in run.children.get(current, ()) if child not in seen]
        seen.update(mine)
        kept[current] = mine
        stack.extend(reversed(mine))
    built: dict[uuid.UUID, CallNode] = {}
    for current in reversed(order):  # descendants come after their ancestors in `order`
        children = tuple(built.pop(child) for child in kept[current])
        built[current] = _node(run.rows[current], children)
    return built[root]


def _node(row: _Row, children: tuple[CallNode, ...]) -> CallNode:
    return CallNode(
        id=str(row.id),
        name=row.name,
        socket=row.socket,
        state=row.state,
        tracking_id=str(row.tracking_id),
        parent_id=str(row.parent_id) if row.parent_id is not None else None,
        started=row.started,
        finished=row.finished,
        error=_first_line(row.error),
        children=children,
    )


def _load_run(session: Session, call_id: uuid.UUID) -> list[_Row]:
    """Every call of ``call_id``'s flow run, in one query, or ObjectNotFound."""
    call, socket = models.Call, models.Socket
    query = (
        select(
            call.id,
            call.name,
            socket.name,
            call.state,
            call.tracking_id,
            call.parent_id,
            call.started,
            call.finished,
            call.error,
            call.created,
        )
        .outerjoin(socket, socket.id == call.socket_id)
        .where(call.tracking_id == _tracking_of(call_id))
    )
    rows = [_Row._make(row) for row in session.execute(query)]
    if not rows:
        raise _not_found(call_id)
    return rows


def _tracking_of(call_id: uuid.UUID) -> Any:
    """The call's tracking id as a scalar subquery, so one statement loads the run."""
    return select(models.Call.tracking_id).where(models.Call.id == call_id).scalar_subquery()


def _order(
    started: datetime | None, created: datetime, call_id: uuid.UUID
) -> tuple[datetime, datetime, str]:
    # A call not started yet sorts by when it was first seen, which keeps a
    # run's listing chronological; the id makes ties deterministic.
    return (started or created, created, str(call_id))


def _first_line(error: str | None) -> str | None:
    if not error:
        return None
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[0] if lines else None


def _seconds(duration: timedelta | None) -> float | None:
    return round(duration.total_seconds(), 6) if duration is not None else None


def _not_found(call_id: str | uuid.UUID) -> ObjectNotFound:
    return ObjectNotFound("call", str(call_id), NOT_FOUND_HINT, by="with id")
