"""Finding a processor's functions: import its module, look each task up."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pyfi.errors import ConfigurationError
from pyfi.wiring import ProcessorSpec


def import_module(module: str, path: Path | None = None) -> Any:
    """Import a processor's module, from ``path`` first when given.

    Raises
    ------
    ConfigurationError
        The module cannot be imported; the first line of the cause is kept.
    """
    if path is not None:
        sys.path.insert(0, str(path.resolve()))
    try:
        return importlib.import_module(module)
    except Exception as exc:  # any import-time failure of user code
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = f" (searched {path} first)" if path else ""
        raise ConfigurationError(
            f"cannot import the processor module {module!r}{where}: {first}; install it in "
            "this environment or pass --path to the folder that contains it"
        ) from exc


def resolve(spec: ProcessorSpec, path: Path | None = None) -> Mapping[str, Callable[..., Any]]:
    """Each socket's function, by socket name."""
    module = import_module(spec.module, path)
    functions: dict[str, Callable[..., Any]] = {}
    for socket in spec.sockets:
        function = getattr(module, socket.task, None)
        if not callable(function):
            raise ConfigurationError(
                f"the module {spec.module!r} has no function {socket.task!r} for socket "
                f"{socket.name}; fix the socket's --task or the module"
            )
        functions[socket.name] = function
    return functions
