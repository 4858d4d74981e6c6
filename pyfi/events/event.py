"""The live event: what a worker says about a call while it happens, as JSON.

Live events are a *view*, not a record: the ``Call`` and ``Event`` rows in the
database are the durable history. An event therefore carries enough to be
shown on its own (where, which call, what state) and travels as plain JSON so
that browsers, shell pipes and other languages can read it. It never travels
as a pickle: a listener must not execute what a worker sends.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket as _socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from pyfi import naming
from pyfi.errors import EventDecodeError, InvalidValue, MessageDecodeError
from pyfi.limits import DEFAULT_LIMITS, check_depth

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning; adding a field does not bump it."""

Channel = Literal["task", "log", "result", "error"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
GLOBAL_CHANNEL = "global"
"""The name listeners use for "every event"; nothing is published under it.

Each event is published once, on its own channel; a ``global`` subscription
is the set of patterns :data:`GLOBAL_PATTERNS`, which match every channel.
"""
GLOBAL_PATTERNS: tuple[str, ...] = tuple(f"*.{channel}" for channel in CHANNELS)
# Nesting a listener accepts in an event (as a worker does in a call).
MAX_EVENT_DEPTH = DEFAULT_LIMITS.max_depth

_REQUIRED_STR = ("channel", "state", "room", "date", "processor", "queue", "hostname")
_OPTIONAL_STR = ("call_id", "tracking_id", "socket")


def room_name(queue: str, processor: str) -> str:
    """The ``<queue>.<processor>`` room a processor's events belong to."""
    return naming.event_room(queue, processor)


def channel_name(queue: str, processor: str, channel: str) -> str:
    """The pub/sub channel of one kind of event of one processor.

    Parameters
    ----------
    queue, processor:
        The names of the queue object and the processor.
    channel:
        One of :data:`CHANNELS`, or ``*`` for a pattern matching all of them.

    Returns
    -------
    str
        ``<queue>.<processor>.<channel>``, e.g. ``pyfi.queue1.proc1.task``.

    Raises
    ------
    InvalidValue
        If ``channel`` is not a known channel.
    """
    if channel != "*" and channel not in CHANNELS:
        raise InvalidValue(f"unknown event channel {channel!r}; expected one of {_choices()}")
    return f"{room_name(queue, processor)}.{channel}"


def _choices() -> str:
    return ", ".join(CHANNELS)


class _Origin:
    """This host and process, read once (and again in a forked child), not per event."""

    hostname = _socket.gethostname()
    pid = os.getpid()

    @classmethod
    def refresh(cls) -> None:
        cls.pid = os.getpid()


os.register_at_fork(after_in_child=_Origin.refresh)


def utc_now() -> str:
    """The current time as ISO-8601 UTC with milliseconds."""
    return iso_ms(time.time())


class _LastSecond:
    """The last second :func:`iso_ms` formatted, with its text (one tuple: threads share it)."""

    formatted: tuple[int, str] = (-1, "")


def iso_ms(epoch: float) -> str:
    """``epoch`` (seconds) as ISO-8601 UTC with milliseconds: ``2024-05-01T12:00:00.123+00:00``.

    The text ``datetime.fromtimestamp(epoch, UTC).isoformat(timespec=
    "milliseconds")`` writes (microseconds rounded, then milliseconds
    truncated), built from the last second's text: a worker stamps every
    event, and formatting a datetime cost more than the rest.
    """
    # As datetime does: the fraction rounded to the microsecond, half to even.
    fraction, whole = math.modf(epoch)
    micros = round(fraction * 1_000_000)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached, text = _LastSecond.formatted
    if cached != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _LastSecond.formatted = (second, text)
    millis = micros // 1000
    return f"{text}.{millis:03d}+00:00"


@dataclass(frozen=True, kw_only=True)
class LiveEvent:
    """One lifecycle step of one call (or one log line), as published live.

    ``data`` holds whatever the channel needs beyond the common fields: a
    result preview, an error's type and message, a log line. It is excluded
    from hashing because a dict cannot be hashed.
    """

    schema: int = SCHEMA_VERSION
    channel: Channel
    state: str
    room: str
    date: str
    call_id: str | None = None
    tracking_id: str | None = None
    socket: str | None = None
    processor: str
    queue: str
    hostname: str
    pid: int
    data: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise InvalidValue(
                f"unknown event channel {self.channel!r}; expected one of {_choices()}"
            )

    @classmethod
    def create(
        cls,
        channel: Channel,
        state: str,
        *,
        queue: str,
        processor: str,
        socket: str | None = None,
        call_id: str | None = None,
        tracking_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> LiveEvent:
        """An event stamped now, from this host and process.

        Raises
        ------
        InvalidValue
            If ``channel`` is not one of :data:`CHANNELS`.
        """
        return cls(
            channel=channel,
            state=state,
            room=room_name(queue, processor),
            date=utc_now(),
            call_id=call_id,
            tracking_id=tracking_id,
            socket=socket,
            processor=processor,
            queue=queue,
            hostname=_Origin.hostname,
            pid=_Origin.pid,
            data=data,
        )

    @property
    def channel_name(self) -> str:
        """The specific channel this event is published on (besides ``global``)."""
        return f"{self.room}.{self.channel}"

    def to_dict(self) -> dict[str, Any]:
        """The event as a new JSON-ready dict (``data`` is copied, not shared)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _FIELD_NAMES}
        out["data"] = dict(self.data) if self.data is not None else None
        return out

    def to_json(self) -> str:
        """The event as one line of JSON.

        Values in ``data`` that JSON cannot hold are sent as their ``repr``:
        a live event is a preview, and an odd result type must never make the
        worker's publish fail.
        """
        return _ENCODE(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> LiveEvent:
        """Parse an event published by any version of pyfi.

        Unknown fields are ignored, so older listeners keep working when newer
        workers add fields.

        Raises
        ------
        EventDecodeError
            If ``text`` is not a JSON object with the fields of an event.
        """
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventDecodeError(f"a live event is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise EventDecodeError(f"a live event must be a JSON object, not {type(raw).__name__}")
        return cls._from_mapping(raw)

    @classmethod
    def _from_mapping(cls, raw: Mapping[str, Any]) -> LiveEvent:
        problems: list[str] = []
        schema = raw.get("schema", SCHEMA_VERSION)
        if not _is_int(schema) or schema < 1:
            problems.append(f"schema must be a positive integer, not {schema!r}")
        for name in _REQUIRED_STR:
            if not isinstance(raw.get(name), str):
                problems.append(f"{name} must be a string")
        for name in _OPTIONAL_STR:
            if raw.get(name) is not None and not isinstance(raw.get(name), str):
                problems.append(f"{name} must be a string or null")
        if not _is_int(raw.get("pid")):
            problems.append("pid must be an integer")
        data = raw.get("data")
        if data is not None and not isinstance(data, dict):
            problems.append("data must be an object or null")
        if isinstance(raw.get("channel"), str) and raw["channel"] not in CHANNELS:
            problems.append(f"channel {raw['channel']!r} is not one of {_choices()}")
        if isinstance(raw.get("date"), str) and not _is_iso_date(raw["date"]):
            problems.append(f"date {raw['date']!r} is not ISO-8601")
        if problems:
            raise EventDecodeError("malformed live event: " + "; ".join(problems))
        return cls(
            schema=int(schema),
            channel=cast(Channel, raw["channel"]),
            state=raw["state"],
            room=raw["room"],
            date=raw["date"],
            call_id=raw.get("call_id"),
            tracking_id=raw.get("tracking_id"),
            socket=raw.get("socket"),
            processor=raw["processor"],
            queue=raw["queue"],
            hostname=raw["hostname"],
            pid=int(raw["pid"]),
            data=data,
        )


_FIELD_NAMES = tuple(f.name for f in fields(LiveEvent))
_BLANK = re.compile(r"\s*")
_DECODER = json.JSONDecoder()


def _too_deep(value: Any) -> bool:
    try:
        check_depth(value, MAX_EVENT_DEPTH)
    except MessageDecodeError:
        return True
    return False


def join_events(payloads: Sequence[str]) -> str:
    """One message carrying several events of a channel: their JSON, one per line.

    Encoded events hold no raw newline (JSON escapes it), so a line is an
    event. Sending a channel's ready events as one message costs Redis one
    ``PUBLISH`` and a listener one read where each event cost both.
    """
    return "\n".join(payloads)


def events_in(raw: bytes | str) -> list[LiveEvent | EventDecodeError]:
    """The events a published message carries, in order; an error stands for a bad one.

    A message holds one event or several (:func:`join_events`); a single
    event may also be pretty-printed by another publisher. A malformed part
    costs only itself: reading goes on at the next line.
    """
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        return [EventDecodeError(f"a live event is not valid JSON: {exc}")]
    out: list[LiveEvent | EventDecodeError] = []
    # Depth can only exceed the number of opening brackets (see pyfi.limits).
    nested = text.count("[") + text.count("{") > MAX_EVENT_DEPTH
    position = _BLANK.match(text).end()  # type: ignore[union-attr]
    while position < len(text):
        try:
            raw_event, position = _DECODER.raw_decode(text, position)
        except (ValueError, RecursionError) as exc:
            why = "it nests too deep" if isinstance(exc, RecursionError) else str(exc)
            out.append(EventDecodeError(f"a live event is not valid JSON: {why}"))
            line_end = text.find("\n", position)
            if line_end < 0:
                break
            position = line_end + 1
        else:
            if nested and _too_deep(raw_event):
                out.append(
                    EventDecodeError(f"a live event nests deeper than {MAX_EVENT_DEPTH} levels")
                )
            elif isinstance(raw_event, dict):
                try:
                    out.append(LiveEvent._from_mapping(raw_event))
                except EventDecodeError as exc:
                    out.append(exc)
            else:
                kind = type(raw_event).__name__
                out.append(EventDecodeError(f"a live event must be a JSON object, not {kind}"))
        position = _BLANK.match(text, position).end()  # type: ignore[union-attr]
    return out


class EventTemplate:
    """The JSON of one kind of event of one socket, open only where calls differ.

    A worker publishes four events per call, and of their thirteen fields
    only the date, the two ids and sometimes ``data`` change from one call of
    a socket to the next; encoding the whole event per call cost more than
    publishing it. The text is exactly that of ``LiveEvent.to_json()`` for
    the same event (a test holds them equal), so listeners cannot tell.

    Raises
    ------
    InvalidValue
        If ``channel`` is not one of :data:`CHANNELS`.
    """

    def __init__(
        self,
        channel: Channel,
        state: str,
        *,
        queue: str,
        processor: str,
        socket: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        if channel not in CHANNELS:
            raise InvalidValue(f"unknown event channel {channel!r}; expected one of {_choices()}")
        room = room_name(queue, processor)
        self.channel_name = f"{room}.{channel}"
        head = {"schema": SCHEMA_VERSION, "channel": channel, "state": state, "room": room}
        self._head = _json(head)[:-1] + ',"date":"'
        self._fixed = {"socket": socket, "processor": processor, "queue": queue}
        self._data = _json_data(data)
        self._pid = -1
        self._tail = ""

    def encode(
        self,
        call_id: str | None,
        tracking_id: str | None,
        data: Mapping[str, Any] | None = None,
        *,
        date: str | None = None,
    ) -> tuple[str, str]:
        """The channel name and JSON of the event for one call, stamped ``date`` or now.

        ``data`` replaces the template's own ``data`` when given. ``date``
        (ISO-8601, as :func:`utc_now` writes it) lets the events of one step
        share a stamp that was read once.
        """
        return self.fill(call_fields(call_id, tracking_id), data, date=date)

    def fill(
        self, ids: str, data: Mapping[str, Any] | None = None, *, date: str | None = None
    ) -> tuple[str, str]:
        """:meth:`encode` with the ids already encoded by :func:`call_fields`.

        The events of one step of a call share their ids; encoding them once
        spares the rest of the step's events that work.
        """
        if self._pid != _Origin.pid:  # first use, or a forked child
            origin = {**self._fixed, "hostname": _Origin.hostname, "pid": _Origin.pid}
            self._tail = "," + _json(origin)[1:-1] + ',"data":'
            self._pid = _Origin.pid
        return self.channel_name, (
            f'{self._head}{date or utc_now()}",{ids}{self._tail}'
            f"{self._data if data is None else _json_data(data)}}}"
        )


def call_fields(call_id: str | None, tracking_id: str | None) -> str:
    """An event's ``call_id`` and ``tracking_id`` fields as JSON, for :meth:`EventTemplate.fill`."""
    return f'"call_id":{_json(call_id)},"tracking_id":{_json(tracking_id)}'


def _json(value: Any) -> str:
    return _ENCODE(value)


def _json_data(data: Mapping[str, Any] | None) -> str:
    return "null" if data is None else _json(dict(data))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_iso_date(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


# One encoder for every event: ``json.dumps`` with options builds a new one per
# call, which cost more than encoding an id. A string (an id) takes its C path.
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=_preview).encode
