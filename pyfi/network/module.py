"""Loading a network declared in a Python file, without writing anything while it imports.

Inside :func:`collecting`, the decorators of :mod:`pyfi.client.decorators`
add their declarations to one :class:`~pyfi.network.declare.Network` instead
of writing them, so that a file of decorated classes and functions can be
applied in one transaction afterwards (``flow compose apply net.py``), or
refused as a whole. Outside it, the decorators apply what they declare at
once, on the default connection (``python net.py``).

The collector lives in a :class:`~contextvars.ContextVar`, so two threads (or
two asyncio tasks) loading networks never mix their declarations.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from pyfi.errors import FlowError, InvalidValue, NetworkFileError
from pyfi.network.declare import Declaration, Network

# Declarations made in a class body, waiting for that class's @processor:
# keyed by (module name, class qualname).
Pending = dict[tuple[str, str], list[Declaration]]


@dataclass
class Collector:
    """Where declarations go while a network file is being loaded."""

    network: Network = field(default_factory=Network)
    pending: Pending = field(default_factory=dict)


_COLLECTOR: ContextVar[Collector | None] = ContextVar("pyfi_network_collector", default=None)


def current_collector() -> Collector | None:
    """The collector of the enclosing :func:`collecting` block, or None."""
    return _COLLECTOR.get()


@contextmanager
def collecting() -> Iterator[Network]:
    """Gather every declaration made inside the block into the yielded network.

    Raises
    ------
    InvalidValue
        On leaving the block, if a socket or plug was declared in the body of
        a class that never got its @processor decorator.
    """
    collector = Collector()
    token = _COLLECTOR.set(collector)
    try:
        yield collector.network
    finally:
        _COLLECTOR.reset(token)
    check_nothing_pending(collector.pending)


def check_nothing_pending(pending: Pending) -> None:
    """Raise :class:`InvalidValue` naming the first declaration still waiting for its class."""
    for (_module, owner), declarations in pending.items():
        if declarations:
            first = declarations[-1]
            kind = type(first).__name__.removesuffix("Decl").lower()
            raise InvalidValue(
                f"{kind} {first.name!r} is declared in class {owner}, which has no @processor "
                "decorator; declarations in a class body are applied with its processor"
            )


def load_network(path: str | Path) -> Network:
    """The network declared by the Python file at ``path``, imported in collecting mode.

    The file is imported under a private module name (so its
    ``if __name__ == "__main__":`` block does not run) with its folder on
    ``sys.path`` while it imports, as when it is run as a script.

    Raises
    ------
    NetworkFileError
        The file cannot be read or raises while it is imported: one line naming
        the file, the line, and the first line of the cause.
    """
    file = Path(path)
    if not file.is_file():
        raise NetworkFileError(f"cannot read {file}: no such file")
    name = f"_pyfi_network_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise NetworkFileError(f"cannot load {file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(file.resolve().parent)
    sys.modules[name] = module
    sys.path.insert(0, folder)
    try:
        with collecting() as network:
            spec.loader.exec_module(module)
    except Exception as exc:
        raise NetworkFileError(_explain(file, exc)) from exc
    finally:
        sys.modules.pop(name, None)
        if folder in sys.path:
            sys.path.remove(folder)
    return network


def _explain(file: Path, exc: BaseException) -> str:
    """``FILE:LINE: cause`` in one line, the line being the file's own frame nearest the error."""
    line: int | None = None
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        line = exc.lineno
        cause = f"{type(exc).__name__}: {exc.msg}"
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if Path(frame.filename).resolve() == file.resolve():
                line = frame.lineno
        text = exc.message if isinstance(exc, FlowError) else str(exc)
        first = next((part for part in text.splitlines() if part.strip()), "")
        cause = first if isinstance(exc, FlowError) else f"{type(exc).__name__}: {first}"
        cause = cause.rstrip(": ")
    where = f"{file}:{line}" if line is not None else str(file)
    return f"cannot load {where}: {cause}"
