"""Field checks that give one clear line before the database would refuse a value.

The database keeps its CHECK constraints as the last line of defence; these
rules exist so the user learns which option was wrong and what is allowed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
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
    "max_length": 0,
    "max_length_bytes": 0,
    "message_ttl": 0,
    "expires": 1,
    "cpus": 1,
}

# Names travel as AMQP routing keys and queue names: keep them printable and short.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,119}")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


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
    """A plausible 5-field cron expression, or :class:`InvalidValue`."""
    fields = expression.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise InvalidValue(
            f"invalid cron expression {expression!r}; expected five fields such as '*/5 * * * *'"
        )
    return expression
