"""A network as declared (by decorators, a YAML file or the object API) and applied by name.

A :class:`Network` is plain data: queues, processors, sockets and plugs, each
named, in the order they were declared. :func:`apply` makes the database agree
with it inside the caller's transaction, kind by kind (queues, processors,
sockets, plugs, so that every reference exists before it is used), and then
checks the whole network.

Applying is an upsert that touches only what differs: a field the declaration
leaves out keeps its stored value, and a field whose stored value already
matches is not written. Applying the same network twice therefore issues no
UPDATE at all, so agents (which hear every write, see :mod:`pyfi.db.changes`)
are not woken and ``updated`` timestamps keep meaning "last really changed".

Two rules keep a declaration complete where "keep the stored value" would
surprise: a plug declared without ``argument`` delivers the whole result (an
argument bound earlier is unbound), and a socket declared with ``interval``
drops a stored ``cron`` (and the other way round), since a socket has one
schedule. An explicit ``None`` in ``fields`` clears a nullable field.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.errors import InvalidValue, UserError
from pyfi.masking import is_masked, mask_url, mask_urls_in
from pyfi.objects import crud
from pyfi.objects.kinds import KINDS, Kind
from pyfi.objects.lookup import find_by_name
from pyfi.objects.validate import coerce_enum

if TYPE_CHECKING:
    from pyfi.network.signature import ParameterSpec

Action = Literal["created", "updated", "unchanged"]

# Fields a declaration may set besides its name and references, with their
# Python type. Enum fields take their value as a string (any case) or the member.
FIELD_TYPES: Mapping[str, Mapping[str, type]] = {
    "queue": {
        "type": str,
        "durable": bool,
        "max_length": int,
        "max_length_bytes": int,
        "message_ttl": int,
        "expires": int,
        "description": str,
    },
    "processor": {
        "module": str,
        "gitrepo": str,
        "branch": str,
        "commit": str,
        "modulepath": str,
        "requirements": str,
        "hostname": str,
        "concurrency": int,
        "retries": int,
        "retry_delay": int,
        "timelimit": int,
        "beat": bool,
        "enabled": bool,
        "requested_status": str,
        "description": str,
    },
    "socket": {
        "wait": bool,
        "interval": int,
        "cron": str,
        "enabled": bool,
        "description": str,
    },
    "plug": {"enabled": bool, "description": str},
}

# Processor fields shown masked in exports (pyfi.masking), with their masker.
# A declared value that holds the mask is accepted only when it masks the stored
# value, and then keeps the stored secret (see _keep_masked).
MASKED_FIELDS: Mapping[str, Callable[[str], str]] = {
    "gitrepo": mask_url,
    "requirements": mask_urls_in,
}


def check_fields(kind: str, name: str, fields: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidValue` for a field ``kind`` lacks or a value of the wrong type.

    ``None`` is accepted for any field: it means "clear it" (see the module doc).
    """
    allowed = FIELD_TYPES[kind]
    for key, value in fields.items():
        expected = allowed.get(key)
        if expected is None:
            raise InvalidValue(
                f"{kind} {name!r}: unknown field {key!r}; expected one of: {', '.join(allowed)}"
            )
        if value is not None and not _has_type(value, expected):
            raise InvalidValue(
                f"{kind} {name!r}: {key} must be {_TYPE_NAMES[expected]}, not {value!r}"
            )


_TYPE_NAMES: Mapping[type, str] = {str: "a string", int: "an integer", bool: "true or false"}


def _has_type(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str | enum.Enum)
    return isinstance(value, expected)


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidValue(f"a {kind} needs a name (a non-empty string), not {name!r}")


def _check_reference(kind: str, name: str, role: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidValue(f"{kind} {name!r}: {role} must be a name (a string), not {value!r}")


@dataclass
class QueueDecl:
    """A queue: its name and the fields given for it."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    origin: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_name("queue", self.name)
        check_fields("queue", self.name, self.fields)


@dataclass
class ProcessorDecl:
    """A processor: its name and fields (``module`` and ``gitrepo`` are needed to create it).

    ``user`` names the pyfi user to record on the row, if such a user exists.
    """

    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    origin: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_name("processor", self.name)
        check_fields("processor", self.name, self.fields)


@dataclass
class SocketDecl:
    """A socket: the processor and function (task) it fronts, and its queue.

    ``parameters``, when given, is the function's signature, recorded on the
    task so that plugs and ``wait`` can be checked against it.
    """

    name: str
    processor: str | None = None
    task: str | None = None
    queue: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    parameters: tuple[ParameterSpec, ...] | None = None
    user: str | None = None
    origin: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_name("socket", self.name)
        for role in ("processor", "task", "queue"):
            _check_reference("socket", self.name, role, getattr(self, role))
        check_fields("socket", self.name, self.fields)


@dataclass
class PlugDecl:
    """A plug from ``source`` to ``target`` socket through ``queue``.

    ``argument`` None delivers the source's whole result; ``type`` and
    ``loop`` None keep the stored value (RESULT and False for a new plug).
    """

    name: str
    source: str | None = None
    target: str | None = None
    queue: str | None = None
    argument: str | None = None
    type: str | None = None
    loop: bool | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    origin: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_name("plug", self.name)
        for role in ("source", "target", "queue", "argument", "type"):
            _check_reference("plug", self.name, role, getattr(self, role))
        if self.loop is not None and not isinstance(self.loop, bool):
            raise InvalidValue(f"plug {self.name!r}: loop must be true or false, not {self.loop!r}")
        check_fields("plug", self.name, self.fields)


Declaration = QueueDecl | ProcessorDecl | SocketDecl | PlugDecl


@dataclass
class Network:
    """Declarations by kind, each kind in declaration order.

    A queue may be declared several times (every socket names its queue):
    the fields are merged, and two different values for one field are an
    error. Any other object declared twice must be declared identically.
    """

    queues: dict[str, QueueDecl] = field(default_factory=dict)
    processors: dict[str, ProcessorDecl] = field(default_factory=dict)
    sockets: dict[str, SocketDecl] = field(default_factory=dict)
    plugs: dict[str, PlugDecl] = field(default_factory=dict)

    @classmethod
    def of(cls, declarations: Iterable[Declaration]) -> Network:
        """A network holding ``declarations``."""
        network = cls()
        network.extend(declarations)
        return network

    def extend(self, declarations: Iterable[Declaration]) -> None:
        """Add each of ``declarations`` in turn (see :meth:`add`)."""
        for declaration in declarations:
            self.add(declaration)

    def add(self, declaration: Declaration) -> None:
        """Add one declaration.

        Raises
        ------
        InvalidValue
            The name is already declared differently.
        """
        if isinstance(declaration, QueueDecl):
            self._merge_queue(declaration)
            return
        if isinstance(declaration, ProcessorDecl):
            _add_once("processor", self.processors, declaration)
        elif isinstance(declaration, SocketDecl):
            _add_once("socket", self.sockets, declaration)
        else:
            _add_once("plug", self.plugs, declaration)

    def _merge_queue(self, queue: QueueDecl) -> None:
        known = self.queues.get(queue.name)
        if known is None:
            self.queues[queue.name] = QueueDecl(queue.name, dict(queue.fields), queue.origin)
            return
        for key, value in queue.fields.items():
            if key in known.fields and known.fields[key] != value:
                raise InvalidValue(
                    f"queue {queue.name!r} is declared twice with different {key} "
                    f"({known.fields[key]!r} and {value!r})"
                )
            known.fields[key] = value

    def __iter__(self) -> Iterator[Declaration]:
        """Every declaration, in the order :func:`apply` handles them."""
        yield from self.queues.values()
        yield from self.processors.values()
        yield from self.sockets.values()
        yield from self.plugs.values()

    def __len__(self) -> int:
        return len(self.queues) + len(self.processors) + len(self.sockets) + len(self.plugs)


def _add_once(kind: str, table: dict[str, Any], declaration: Any) -> None:
    known = table.get(declaration.name)
    if known is not None and known != declaration:
        raise InvalidValue(f"{kind} {declaration.name!r} is declared twice, differently")
    table[declaration.name] = declaration


@dataclass(frozen=True)
class Change:
    """What applying did to one object, and which fields it wrote."""

    kind: str
    name: str
    action: Action
    fields: tuple[str, ...] = ()


@dataclass
class ApplyReport:
    """Every declared object, created, updated or left unchanged, in the order applied."""

    changes: list[Change] = field(default_factory=list)

    def _by(self, action: Action) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for change in self.changes:
            if change.action == action:
                found.setdefault(change.kind, []).append(change.name)
        return found

    @property
    def created(self) -> dict[str, list[str]]:
        """Names of the objects created, by kind."""
        return self._by("created")

    @property
    def updated(self) -> dict[str, list[str]]:
        """Names of the objects updated, by kind."""
        return self._by("updated")

    @property
    def unchanged(self) -> dict[str, list[str]]:
        """Names of the objects that already matched, by kind."""
        return self._by("unchanged")

    @property
    def changed(self) -> bool:
        """True when anything was created or updated."""
        return any(change.action != "unchanged" for change in self.changes)

    def summary(self) -> str:
        """One line: ``2 queues (2 created), 1 processor (1 unchanged), ...``."""
        parts = []
        for kind in ("queue", "processor", "socket", "plug"):
            mine = [c for c in self.changes if c.kind == kind]
            if not mine:
                continue
            counts = [
                f"{n} {action}"
                for action in ("created", "updated", "unchanged")
                if (n := sum(c.action == action for c in mine))
            ]
            noun = KINDS[kind].plural if len(mine) != 1 else kind
            parts.append(f"{len(mine)} {noun} ({', '.join(counts)})")
        return ", ".join(parts) if parts else "nothing declared"


def apply(session: Session, network: Network) -> ApplyReport:
    """Make the database agree with ``network``, inside the caller's transaction.

    Nothing is committed here: on any error the caller's transaction rolls
    back and nothing of the network is written.

    Returns
    -------
    ApplyReport
        What was created, updated and left unchanged.

    Raises
    ------
    InvalidValue, ObjectNotFound, DuplicateObject
        A declaration is incomplete, out of range or refers to a missing object
        (the same errors `flow add` gives).
    InvalidNetwork
        The resulting network has a cycle, a plug to an argument its target
        lacks, or a waiting socket that cannot be fed.
    """
    from pyfi.network.validate import check_network

    report = ApplyReport()
    for declaration in network:
        with _located(declaration):
            report.changes.append(_apply_one(session, declaration))
    check_network(session)
    return report


def _apply_one(session: Session, declaration: Declaration) -> Change:
    if isinstance(declaration, QueueDecl):
        return _upsert(session, "queue", declaration.name, dict(declaration.fields))
    if isinstance(declaration, ProcessorDecl):
        return _apply_processor(session, declaration)
    if isinstance(declaration, SocketDecl):
        return _apply_socket(session, declaration)
    return _apply_plug(session, declaration)


@contextmanager
def _located(declaration: Declaration) -> Iterator[None]:
    """Say which declaration (and where it was written) a user error comes from."""
    try:
        yield
    except UserError as exc:
        kind = type(declaration).__name__.removesuffix("Decl").lower()
        label = f"{kind} {declaration.name!r}"
        message = exc.message
        if not re.search(rf"(?<![\w.:-]){re.escape(declaration.name)}(?![\w.:-])", message):
            message = f"{label}: {message}"
        if declaration.origin:
            message = f"{declaration.origin}: {message}"
        # Same class and attributes (callers match on them), message in context.
        exc.args = (message,)
        raise


def _apply_processor(session: Session, decl: ProcessorDecl) -> Change:
    fields = _keep_masked(session, decl.name, dict(decl.fields))
    return _upsert(session, "processor", decl.name, fields, user=decl.user)


def _keep_masked(session: Session, name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without the masked values that mask the stored ones (their secret is kept).

    An export written without secrets applies back unchanged; a masked value
    that masks nothing stored is refused, since ``***`` is no credential.
    """
    for key, masker in MASKED_FIELDS.items():
        value = fields.get(key)
        if not isinstance(value, str) or not is_masked(value):
            continue
        stored = find_by_name(session, models.Processor, name)
        if stored is None or masker(getattr(stored, key) or "") != value:
            raise InvalidValue(
                f"processor {name!r}: its {key} {mask_urls_in(value)!r} has masked credentials; "
                "supply the real credentials (or export with --with-secrets)"
            )
        del fields[key]
    return fields


def _apply_socket(session: Session, decl: SocketDecl) -> Change:
    fields: dict[str, Any] = dict(decl.fields)
    for key in ("processor", "task", "queue"):
        if getattr(decl, key) is not None:
            fields[key] = getattr(decl, key)
    # One schedule per socket: declaring one drops the other.
    if fields.get("interval") is not None:
        fields.setdefault("cron", None)
    if fields.get("cron") is not None:
        fields.setdefault("interval", None)
    change = _upsert(session, "socket", decl.name, fields, user=decl.user)
    if decl.parameters is not None:
        from pyfi.network.signature import record_signature

        socket = _get(session, models.Socket, decl.name)
        if record_signature(session, socket.task, decl.parameters):
            crud.require_on(session, KINDS["socket"], "update", decl.name)
            crud.flush(session, KINDS["socket"], decl.name)
            if change.action == "unchanged":
                change = Change("socket", decl.name, "updated", ("arguments",))
            elif change.action == "updated":
                change = Change("socket", decl.name, "updated", (*change.fields, "arguments"))
    return change


def _apply_plug(session: Session, decl: PlugDecl) -> Change:
    fields: dict[str, Any] = dict(decl.fields)
    for key in ("source", "target", "queue", "type", "loop"):
        if getattr(decl, key) is not None:
            fields[key] = getattr(decl, key)
    fields["argument"] = decl.argument
    return _upsert(session, "plug", decl.name, fields, user=decl.user)


def _upsert(
    session: Session, kind_name: str, name: str, fields: dict[str, Any], user: str | None = None
) -> Change:
    """Create ``name`` from ``fields`` or write the fields whose stored value differs."""
    kind = KINDS[kind_name]
    obj = find_by_name(session, kind.model, name)
    user_id = _user_id(session, user)
    if obj is None:
        given = {k: v for k, v in fields.items() if v is not None}
        missing = [f for f in kind.required if f != "name" and f not in given]
        if missing:
            raise InvalidValue(
                f"{kind_name} {name!r} does not exist yet, so it needs: {', '.join(missing)}"
            )
        crud.create(session, kind, {"name": name, **given, "user_id": user_id})
        return Change(kind_name, name, "created", tuple(sorted(given)))
    changes = {k: v for k, v in fields.items() if not _matches(kind, obj, k, v)}
    if user_id is not None and obj.user_id != user_id:
        changes["user_id"] = user_id
    if not changes:
        return Change(kind_name, name, "unchanged")
    _write(session, kind, obj, name, changes)
    return Change(kind_name, name, "updated", tuple(sorted(changes)))


def _write(session: Session, kind: Kind, obj: Any, name: str, changes: Mapping[str, Any]) -> None:
    # crud.update treats None as "not given", so clearing is done here first
    # (clearing cron before setting interval keeps the one-schedule rule).
    cleared = [k for k, v in changes.items() if v is None]
    for key in cleared:
        if key == "argument":
            obj.argument = None
            continue
        column = sa_inspect(kind.model).columns.get(key)
        if column is None or not column.nullable:
            raise InvalidValue(f"{kind.name} {name!r}: {key} cannot be cleared")
        setattr(obj, key, None)
    given = {k: v for k, v in changes.items() if v is not None}
    if given:
        crud.update(session, kind, name, given)
    else:
        crud.require_on(session, kind, "update", name)
        if kind.finish is not None:
            kind.finish(session, obj)
        crud.flush(session, kind, name)


def _matches(kind: Kind, obj: Any, key: str, value: Any) -> bool:
    """True when ``obj`` already stores ``value`` for ``key``."""
    if key in ("queue", "processor", "source", "target"):
        return bool(getattr(obj, key).name == value)
    if key == "task":
        return bool(obj.task.name == value)
    if key == "argument":
        current = obj.argument.name if obj.argument is not None else None
        return bool(current == value)
    if not hasattr(kind.model, key):
        raise InvalidValue(f"a {kind.name} has no field {key!r}")
    if value is not None and key in kind.enums:
        value = coerce_enum(kind.enums[key], value, key)
    return bool(getattr(obj, key) == value)


def _user_id(session: Session, user: str | None) -> Any:
    """The id of the pyfi user called ``user``; None if there is no such user."""
    if user is None:
        return None
    return session.scalar(select(models.User.id).where(models.User.name == user))


def _get(session: Session, model: type[Any], name: str) -> Any:
    found = find_by_name(session, model, name)
    if found is None:  # pragma: no cover - just upserted in this transaction
        raise InvalidValue(f"{model.__name__.lower()} {name!r} vanished while being applied")
    return found
