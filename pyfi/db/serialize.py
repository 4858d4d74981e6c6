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


def to_dict(obj: DeclarativeBase) -> dict[str, Any]:
    """Every column of ``obj`` except those marked ``info={"secret": True}``."""
    mapper = inspect(type(obj))
    return {
        attr.key: json_value(getattr(obj, attr.key))
        for attr in mapper.column_attrs
        if not attr.columns[0].info.get("secret")
    }


def row_to_dict(row: Any, secret_columns: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A Core result row (e.g. of an association table) as a dictionary."""
    return {key: json_value(value) for key, value in row._mapping.items() if key not in secret_columns}
