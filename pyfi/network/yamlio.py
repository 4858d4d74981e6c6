"""A network as a YAML file: :func:`load_yaml` reads one strictly, :func:`export_yaml` writes one.

The format (every section optional, each a list of objects with a ``name``)::

    version: 1
    queues:
    - name: sockq1
      type: direct
      durable: true
      message_ttl: 300000
    processors:
    - name: proc1
      module: pyfi.processors.sample
      gitrepo: https://github.com/radiantone/pyfi-processors
      concurrency: 7
    sockets:
    - name: proc1.do_something
      processor: proc1
      task: do_something
      queue: sockq1
      interval: 15
      arguments: [message]         # the function's signature, when recorded
    plugs:
    - name: plug1
      source: proc1.do_something
      target: proc2.do_this
      queue: queue1
      argument: message            # left out: the whole result is delivered
      type: RESULT
      loop: false

Fields are those of ``flow add``. An ``arguments`` item is a parameter name
(a required positional-or-keyword parameter) or a mapping with ``name``,
``kind`` (``positional_or_keyword``, ``keyword_only``, ``var_positional``, ...)
and ``required``. Loading is strict: an unknown section or field, a wrong
type or a duplicate key is a one-line error naming the file and the line.

An export is a file that applies: applied to an empty database and exported
again it gives the same text. Git URLs and URLs in ``requirements`` are written
masked by :mod:`pyfi.masking` (``https://user:***@host/...``,
``https://***@github.com/...``, ``?token=***``) unless ``with_secrets``;
applying a masked value is refused unless the stored value is the one it masks,
and then the stored secret is kept.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from pyfi.db import models
from pyfi.errors import FlowError, NetworkFileError
from pyfi.network.declare import (
    FIELD_TYPES,
    MASKED_FIELDS,
    Declaration,
    Network,
    PlugDecl,
    ProcessorDecl,
    QueueDecl,
    SocketDecl,
)

FORMAT_VERSION = 1
SECTIONS = ("queues", "processors", "sockets", "plugs")
HEADER = "# A pyfi network: apply it with `flow compose apply FILE`.\n"

# Reference fields of each section, written (and read) before the plain fields.
_REFERENCES: Mapping[str, tuple[str, ...]] = {
    "queues": (),
    "processors": (),
    "sockets": ("processor", "task", "queue"),
    "plugs": ("source", "target", "queue", "argument", "type", "loop"),
}
_KIND = {"queues": "queue", "processors": "processor", "sockets": "socket", "plugs": "plug"}
_PARAMETER_KINDS = (
    "positional_only",
    "positional_or_keyword",
    "var_positional",
    "keyword_only",
    "var_keyword",
)
_DEFAULT_KIND = "positional_or_keyword"


class _Located(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class _Problem(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """Safe YAML that keeps line numbers and refuses duplicate keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    result = _Located()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, Hashable):
            raise _Problem(line, "a key must be a plain value")
        if key in result:
            raise _Problem(line, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml(text_or_path: str | Path, *, source: str | None = None) -> Network:
    """The network declared by a YAML document.

    Parameters
    ----------
    text_or_path:
        A :class:`~pathlib.Path`, a string ending in ``.yaml``/``.yml`` (a
        file name), or the YAML text itself.
    source:
        The name to show in errors (default: the file name, or ``<yaml>``).

    Raises
    ------
    NetworkFileError
        The file cannot be read, is not YAML, or does not describe a network:
        ``FILE:LINE: what is wrong``.
    """
    text, where = _read(text_or_path)
    where = source or where
    try:
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
        return _network(document, where)
    except _Problem as problem:
        at = f"{where}:{problem.line}" if problem.line is not None else where
        raise NetworkFileError(f"{at}: {problem.message}") from problem
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        at = f"{where}:{line}" if line is not None else where
        raise NetworkFileError(f"{at}: invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NetworkFileError(f"{where}: invalid YAML: {first}") from exc


def _read(text_or_path: str | Path) -> tuple[str, str]:
    is_path = isinstance(text_or_path, Path) or (
        "\n" not in text_or_path and text_or_path.endswith((".yaml", ".yml"))
    )
    if not is_path:
        return str(text_or_path), "<yaml>"
    path = Path(text_or_path)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        raise NetworkFileError(f"cannot read {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise NetworkFileError(f"cannot read {path}: {reason}") from exc


def _network(document: Any, where: str) -> Network:
    if document is None:
        return Network()
    if not isinstance(document, _Located):
        raise _Problem(1, "expected a mapping with sections " + ", ".join(SECTIONS))
    allowed = ("version", *SECTIONS)
    for key, line in document.key_lines.items():
        if key not in allowed:
            raise _Problem(line, f"unknown section {key!r}; expected one of: {', '.join(allowed)}")
    version = document.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise _Problem(
            document.key_lines.get("version"), f"unsupported version {version!r}; expected 1"
        )
    network = Network()
    for section in SECTIONS:
        items = document.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            raise _Problem(document.key_lines[section], f"{section} must be a list of objects")
        for index, item in enumerate(items):
            declaration = _declaration(section, index, item, document.key_lines[section])
            declaration.origin = f"{where}:{_line(item)}"
            try:
                network.add(declaration)
            except FlowError as exc:
                raise _Problem(_line(item), exc.message) from exc
    return network


def _line(item: Any, key: Any = None) -> int | None:
    if not isinstance(item, _Located):
        return None
    return item.key_lines.get(key, item.line) if key is not None else item.line


def _declaration(section: str, index: int, item: Any, section_line: int) -> Declaration:
    kind = _KIND[section]
    label = f"{section}[{index}]"
    if not isinstance(item, _Located):
        raise _Problem(section_line, f"{label}: expected a mapping with a name, not {item!r}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _Problem(item.line, f"{label}: a {kind} needs a name (a string)")
    label = f"{kind} {name!r}"
    references = _REFERENCES[section]
    extra = ("arguments",) if section == "sockets" else ()
    allowed = ("name", *references, *FIELD_TYPES[kind], *extra)
    for key, line in item.key_lines.items():
        if key not in allowed:
            raise _Problem(
                line, f"{label}: unknown field {key!r}; expected one of: {', '.join(allowed)}"
            )
    for key in references:
        value = item.get(key)
        expected = bool if key == "loop" else str
        if value is not None and (not isinstance(value, expected) or value == ""):
            what = "true or false" if expected is bool else "a name"
            raise _Problem(_line(item, key), f"{label}: {key} must be {what}, not {value!r}")
    fields = {k: v for k, v in item.items() if k in FIELD_TYPES[kind]}
    try:
        return _build(section, name, item, fields)
    except FlowError as exc:
        bad = next((k for k in fields if k in exc.message), None)
        raise _Problem(_line(item, bad), exc.message) from exc


def _build(section: str, name: str, item: _Located, fields: dict[str, Any]) -> Declaration:
    if section == "queues":
        return QueueDecl(name, fields)
    if section == "processors":
        return ProcessorDecl(name, fields)
    if section == "sockets":
        parameters = None
        if "arguments" in item:
            parameters = _parameters(name, item["arguments"], _line(item, "arguments"))
        return SocketDecl(
            name,
            processor=item.get("processor"),
            task=item.get("task"),
            queue=item.get("queue"),
            fields=fields,
            parameters=parameters,
        )
    return PlugDecl(
        name,
        source=item.get("source"),
        target=item.get("target"),
        queue=item.get("queue"),
        argument=item.get("argument"),
        type=item.get("type"),
        loop=item.get("loop"),
        fields=fields,
    )


def _parameters(socket: str, items: Any, line: int | None) -> tuple[Any, ...]:
    from pyfi.network.signature import ParameterSpec

    if not isinstance(items, list):
        raise _Problem(line, f"socket {socket!r}: arguments must be a list")
    parameters = []
    for position, item in enumerate(items):
        at = _line(item) or line
        spec = {"name": item} if isinstance(item, str) else item
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _Problem(at, f"socket {socket!r}: arguments[{position}] needs a name")
        unknown = set(spec) - {"name", "kind", "required"}
        if unknown:
            raise _Problem(
                at,
                f"socket {socket!r}: unknown argument field {sorted(unknown)[0]!r}; "
                "expected name, kind, required",
            )
        kind = spec.get("kind", _DEFAULT_KIND)
        if kind not in _PARAMETER_KINDS:
            raise _Problem(
                at, f"socket {socket!r}: argument kind {kind!r} is not one of {_PARAMETER_KINDS}"
            )
        required = spec.get("required", not kind.startswith("var_"))
        if not isinstance(required, bool):
            raise _Problem(at, f"socket {socket!r}: required must be true or false")
        parameters.append(ParameterSpec(spec["name"], position, kind, required))
    return tuple(parameters)


def export_yaml(session: Session, *, with_secrets: bool = False) -> str:
    """The whole network of the database as YAML that :func:`load_yaml` reads back.

    Objects are sorted by name within each section. Runtime state (a
    processor's status, tasks no socket uses) is not part of a network and is
    left out, as are fields that are unset.

    Parameters
    ----------
    with_secrets:
        Write git URLs with their passwords instead of ``***``.
    """
    queues = session.scalars(select(models.Queue).order_by(models.Queue.name))
    processors = session.scalars(select(models.Processor).order_by(models.Processor.name))
    sockets = session.scalars(
        select(models.Socket)
        .order_by(models.Socket.name)
        .options(
            selectinload(models.Socket.processor),
            selectinload(models.Socket.queue),
            selectinload(models.Socket.task).selectinload(models.Task.arguments),
        )
    )
    plugs = session.scalars(
        select(models.Plug)
        .order_by(models.Plug.name)
        .options(
            selectinload(models.Plug.source),
            selectinload(models.Plug.target),
            selectinload(models.Plug.queue),
            selectinload(models.Plug.argument),
        )
    )
    document: dict[str, Any] = {"version": FORMAT_VERSION}
    document["queues"] = [_plain("queue", q, {}) for q in queues]
    document["processors"] = [_plain("processor", p, {}, secrets=with_secrets) for p in processors]
    document["sockets"] = [_socket(s) for s in sockets]
    document["plugs"] = [_plug(p) for p in plugs]
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return HEADER + body


def _plain(
    kind: str, obj: Any, references: dict[str, Any], *, secrets: bool = False
) -> dict[str, Any]:
    record: dict[str, Any] = {"name": obj.name, **references}
    for key in FIELD_TYPES[kind]:
        value = getattr(obj, key)
        if value is None:
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        if key in MASKED_FIELDS and not secrets:
            value = MASKED_FIELDS[key](value)
        record[key] = value
    return record


def _socket(socket: models.Socket) -> dict[str, Any]:
    references = {
        "processor": socket.processor.name,
        "task": socket.task.name,
        "queue": socket.queue.name,
    }
    record = _plain("socket", socket, references)
    if socket.task.inspected is not None:
        record["arguments"] = [
            _argument(a) for a in socket.task.arguments if a.position is not None
        ]
    return record


def _argument(argument: models.Argument) -> Any:
    kind = argument.kind or _DEFAULT_KIND
    default_required = not kind.startswith("var_")
    if kind == _DEFAULT_KIND and argument.required is not False:
        return argument.name
    spec: dict[str, Any] = {"name": argument.name, "kind": kind}
    if argument.required is not None and argument.required != default_required:
        spec["required"] = argument.required
    return spec


def _plug(plug: models.Plug) -> dict[str, Any]:
    references: dict[str, Any] = {
        "source": plug.source.name,
        "target": plug.target.name,
        "queue": plug.queue.name,
    }
    if plug.argument is not None:
        references["argument"] = plug.argument.name
    references |= {"type": plug.type.value, "loop": plug.loop}
    return _plain("plug", plug, references)


class _Dumper(yaml.SafeDumper):
    """Safe YAML that writes multi-line strings (requirements) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
