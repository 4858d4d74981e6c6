"""Rows as JSON-ready dictionaries, without their secrets.

Two column markers decide what a row shows of itself, wherever it is printed
(`flow ls`, `flow db json`, the client's snapshots): ``info={"secret": True}``
leaves a column out (password hashes), and ``info={"masked": "url"}`` or
``{"masked": "text"}`` shows a URL, or the URLs inside a text, through
:mod:`pyfi.masking` (a ``gitrepo`` with a token, ``requirements`` naming
``git+https://TOKEN@...``, a status reason quoting a tool's error).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.orm import DeclarativeBase

from pyfi.masking import mask_url, mask_urls_in

_MASKERS = {"url": mask_url, "text": mask_urls_in}


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


def is_secret(column: ColumnElement[Any]) -> bool:
    """True when ``column`` is never shown (marked ``info={"secret": True}``)."""
    return bool(column.info.get("secret"))


def shown(column: ColumnElement[Any], value: Any) -> Any:
    """``value`` of ``column`` as it may be shown: masked if the column says so."""
    masker = _MASKERS.get(column.info.get("masked", ""))
    return masker(value) if masker is not None and isinstance(value, str) else value


def to_dict(obj: DeclarativeBase, *, raw: bool = False) -> dict[str, Any]:
    """Every column of ``obj`` as it may be shown: secrets left out, URLs masked.

    Values are JSON-ready unless ``raw`` asks for the Python values (for
    renderers that format timestamps and enums themselves).
    """
    mapper = inspect(type(obj))
    convert = _unchanged if raw else json_value
    return {
        attr.key: convert(shown(attr.columns[0], getattr(obj, attr.key)))
        for attr in mapper.column_attrs
        if not is_secret(attr.columns[0])
    }
