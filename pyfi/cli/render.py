"""Tables and JSON on stdout; the only place that decides how output looks."""

from __future__ import annotations

import enum
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pyfi.db.enums import CallState

if TYPE_CHECKING:
    from pyfi.provenance import CallNode

T = TypeVar("T")


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


# Columns a drawn tree keeps for its labels; deeper levels continue in a new tree.
TREE_LABEL_ROOM = 60
TREE_GUIDE_WIDTH = 4
CONTINUED = "⋯ continued below"


def print_tree(root: T, label: Callable[[T], Any], children: Callable[[T], Iterable[T]]) -> None:
    """Draw the tree under ``root``; ``label`` gives each node's text (str or rich Text).

    Each level indents by four columns, and rich silently drops whatever no
    longer fits the width. So a branch deeper than the console allows is cut:
    its last drawn node says it is :data:`CONTINUED`, and the branch is drawn
    again below as a tree of its own, starting from that node. Built with
    explicit stacks rather than recursion, so a chain thousands deep draws too.
    """
    from rich.text import Text
    from rich.tree import Tree

    console = _console()
    max_depth = max(8, (console.width - TREE_LABEL_ROOM) // TREE_GUIDE_WIDTH)
    pending = [root]
    while pending:
        start = pending.pop(0)
        top = Tree(label(start), guide_style="dim")
        stack = [(start, top, 0)]
        while stack:
            node, branch, depth = stack.pop()
            kids = list(children(node))
            if kids and depth >= max_depth:
                branch.add(Text(CONTINUED, style="dim"))
                pending.append(node)
                continue
            drawn = [(child, branch.add(label(child)), depth + 1) for child in kids]
            stack.extend(reversed(drawn))  # visit in drawing order, so cuts continue in order
        console.print(top)
        if pending:
            console.print()


def duration_text(duration: timedelta) -> str:
    """A duration as people read it: ``0.042s``, ``12.50s``, ``3m07s``, ``2h05m``."""
    seconds = duration.total_seconds()
    if seconds < 1:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


FOCUS_MARK = "◀"
# Piped output has no colour; states stay readable as words either way.
STATE_STYLES = {
    CallState.FINISHED: "green",
    CallState.FAILED: "red",
    CallState.DEAD: "red",
    CallState.RETRYING: "yellow",
    CallState.RUNNING: "cyan",
}


def call_label(node: CallNode, focus: str | None) -> Any:
    """One call in a drawn tree: name, short id, state, duration, first error line.

    The call whose id is ``focus`` is bold and marked with :data:`FOCUS_MARK`,
    so it can be found in a graph even without colour.
    """
    from rich.text import Text

    label = Text(node.name, style="bold" if node.id == focus else "")
    if node.socket is not None and node.socket != node.name:
        label.append(f" (socket now {node.socket})", style="dim")
    label.append(f"  {node.id[:8]}", style="dim")
    label.append(f"  {node.state.value}", style=STATE_STYLES.get(node.state, ""))
    if node.duration is not None:
        label.append(f"  {duration_text(node.duration)}")
    if node.error:
        label.append(f"  {node.error[:100]}", style="red")
    if node.id == focus:
        label.append(f"  {FOCUS_MARK} this call", style="bold")
    return label


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


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``), safe to print to a terminal.

    For text others control (live events, names off the wire): an escape
    sequence in it would otherwise drive the reader's terminal (move the
    cursor, rewrite earlier lines, set the window title). Ordinary text
    passes unchanged, at the cost of one ``str.isprintable``.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == " " else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
