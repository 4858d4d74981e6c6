"""Field checks that give one clear line before the database would refuse a value.

The database keeps its CHECK constraints as the last line of defence; these
rules exist so the user learns which option was wrong and what is allowed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pyfi.errors import InvalidValue

E = TypeVar("E", bound=enum.Enum)

# Smallest allowed value of integer fields, by field name (same on every kind).
MINIMUMS: Mapping[str, int] = {
    "concurrency": 1,
    "retries": 0,
    "retry_delay": 0,
    "timelimit": 1,
    "interval": 1,
    "catch_up": 1,
    "max_length": 0,
    "max_length_bytes": 0,
    "message_ttl": 0,
    "expires": 1,
    "cpus": 1,
}

# Names travel as AMQP routing keys and queue names: keep them printable and short.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,119}")


def check_name(name: str, kind: str) -> str:
    """A valid object name, or :class:`InvalidValue`."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidValue(
            f"invalid {kind} name {name!r}: use 1-120 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_minimums(values: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidValue` for an integer field below its minimum."""
    for field, minimum in MINIMUMS.items():
        value = values.get(field)
        if value is not None and value < minimum:
            raise InvalidValue(f"{field} must be at least {minimum}, not {value}")


def coerce_enum(enum_class: type[E], value: Any, field: str) -> E:
    """``value`` as a member of ``enum_class``, matching values case-insensitively."""
    if isinstance(value, enum_class):
        return value
    text = str(value)
    for member in enum_class:
        if str(member.value).lower() == text.lower():
            return member
    allowed = ", ".join(str(member.value) for member in enum_class)
    raise InvalidValue(f"invalid {field} {text!r}; choose one of: {allowed}")


def check_cron(expression: str) -> str:
    """A 5-field cron expression the scheduler can fire, or :class:`InvalidValue`.

    Parsed by the scheduler's own library (``cronsim``), so an expression
    accepted here is one that fires: ranges, steps, names, ``L`` and ``#``,
    but not Quartz's ``?`` or a seconds field.
    """
    from cronsim import CronSim, CronSimError

    message = f"invalid cron expression {expression!r}; expected five fields such as '*/5 * * * *'"
    if len(expression.split()) != 5:
        raise InvalidValue(message)
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        raise InvalidValue(f"{message} ({exc})") from None
    return expression


def check_timezone(name: str) -> str:
    """An IANA time zone name, or :class:`InvalidValue`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return name


def check_input(text: str) -> str:
    """A socket's scheduled input: a JSON array or object within the wire limits.

    Raises
    ------
    InvalidValue
        Not JSON, not an array or object, or past a limit of
        :mod:`pyfi.limits` (size, depth, digits).
    """
    from pyfi.errors import MessageDecodeError
    from pyfi.limits import DEFAULT_LIMITS, parse_json

    raw = text.encode()
    if len(raw) > DEFAULT_LIMITS.max_message_bytes:
        raise InvalidValue(
            f"the input is {len(raw)} bytes, over the limit of {DEFAULT_LIMITS.max_message_bytes}"
        )
    try:
        value = parse_json(raw, DEFAULT_LIMITS)
    except MessageDecodeError as exc:
        raise InvalidValue(f"invalid input: {exc}") from None
    if not isinstance(value, list | dict):
        raise InvalidValue(
            "the input must be a JSON array (positional arguments) or object "
            "(keyword arguments), e.g. '[1, 2]' or '{\"n\": 3}'"
        )
    if isinstance(value, dict):
        for keyword in value:
            if len(keyword) > DEFAULT_LIMITS.max_name_chars:
                raise InvalidValue(f"the input's keyword {keyword[:40]!r}... is too long")
    return text
