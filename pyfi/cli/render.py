"""Tables and JSON on stdout; the only place that decides how output looks."""

from __future__ import annotations

import enum
import json
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click


def _console() -> Any:
    from rich.console import Console

    stream = sys.stdout
    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped or captured: never wrap or truncate, so output stays greppable.
        console = Console(file=stream, highlight=False, width=1000, no_color=True)
    return console


def display(value: Any) -> str:
    """A value as shown in a table cell."""
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return ", ".join(display(v) for v in value)
    return str(value)


def print_table(
    columns: Sequence[tuple[str, str]],
    rows: Iterable[Mapping[str, Any]],
    *,
    title: str | None = None,
) -> None:
    """Print ``rows`` as a table; ``columns`` are (header, key) pairs."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SQUARE, title_justify="left", show_lines=False)
    for header, _key in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(display(row.get(key)) for _header, key in columns))
    _console().print(table)


def print_record(record: Mapping[str, Any], *, title: str | None = None) -> None:
    """Print one object as a two-column field/value table."""
    print_table(
        [("Field", "field"), ("Value", "value")],
        ({"field": key, "value": value} for key, value in record.items()),
        title=title,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=_json_default, sort_keys=False))


def note(message: str) -> None:
    """A line for humans on stderr, so stdout stays clean for pipes."""
    click.echo(message, err=True)
