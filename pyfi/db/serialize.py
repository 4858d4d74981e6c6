"""Rows as JSON-ready dictionaries, without their secrets."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import DeclarativeBase


def json_value(value: Any) -> Any:
    """A column value as a JSON-compatible value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _unchanged(value: Any) -> Any:
    return value


def to_dict(obj: DeclarativeBase, *, raw: bool = False) -> dict[str, Any]:
    """Every column of ``obj`` except those marked ``info={"secret": True}``.

    Values are JSON-ready unless ``raw`` asks for the Python values (for
    renderers that format timestamps and enums themselves).
    """
    mapper = inspect(type(obj))
    convert = _unchanged if raw else json_value
    return {
        attr.key: convert(getattr(obj, attr.key))
        for attr in mapper.column_attrs
        if not attr.columns[0].info.get("secret")
    }
