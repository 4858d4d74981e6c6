"""Finding a processor's functions: load its module from its checkout, check each task.

What may be loaded is decided by :mod:`pyfi.trust`; this module does the
loading. With a checkout folder (``--path``, which an agent always passes)
the module's own file is executed, found by :func:`pyfi.trust.locate_module`
and never looked up on ``sys.path``: a name the standard library also uses
(a checkout's ``json.py``) still loads the checkout's file, not the module
Python has cached. Such a module is kept out of ``sys.modules`` afterwards,
so the worker's own later imports of that name still get the standard library.

Without a checkout (a worker started by hand on installed code) the module is
imported by name, but only from a top-level package the operator names with
``--allow-installed``, and never from the standard library or pyfi itself.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pyfi import trust
from pyfi.errors import CodeNotAllowed, ConfigurationError
from pyfi.wiring import ProcessorSpec


def import_module(
    module: str, path: Path | None = None, *, installed: Collection[str] = ()
) -> ModuleType:
    """A processor's module: from the checkout ``path``, else an allowed installed package.

    Raises
    ------
    CodeNotAllowed
        The module is not a file of the checkout, or (without ``path``) not in
        a package named by ``installed``, or part of the standard library.
    ConfigurationError
        The module failed to import; the first line of the cause is kept.
    """
    if path is not None:
        return _load_from_checkout(module, trust.locate_module(module, path), path)
    return _import_installed(module, installed)


def resolve(
    spec: ProcessorSpec, path: Path | None = None, *, installed: Collection[str] = ()
) -> Mapping[str, Callable[..., Any]]:
    """Each socket's function, by socket name (each checked by :func:`pyfi.trust.check_task`)."""
    module = import_module(spec.module, path, installed=installed)
    return {socket.name: trust.check_task(module, socket.task) for socket in spec.sockets}


def _import_installed(module: str, installed: Collection[str]) -> ModuleType:
    trust.check_module_name(module)
    top = module.partition(".")[0]
    if trust.is_standard_library(module) or top == "pyfi":
        raise CodeNotAllowed(
            f"processor module {module!r} belongs to the "
            f"{'standard library' if top != 'pyfi' else 'pyfi package'}; a processor runs "
            "only its own code: start the worker with --path to the folder holding its module"
        )
    if top not in installed:
        raise CodeNotAllowed(
            f"processor module {module!r} would be imported from the installed packages; "
            f"start the worker with --path to the folder holding it, or allow its package "
            f"with --allow-installed {top}"
        )
    try:
        return importlib.import_module(module)
    except Exception as exc:  # any import-time failure of user code
        raise _import_failed(module, exc, "install it in this environment") from exc


def _load_from_checkout(module: str, steps: Sequence[trust.Step], path: Path) -> ModuleType:
    root = str(path.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)  # so the module's own top-level imports find its siblings
    before = set(sys.modules)
    shadowed: dict[str, ModuleType | None] = {}
    loaded: ModuleType | None = None
    try:
        for step in steps:
            current = sys.modules.get(step.name)
            if current is not None and _loaded_from(current, step):
                loaded = current
                continue
            if current is not None or trust.is_standard_library(step.name):
                shadowed.setdefault(step.name, current)
            child = _execute(step)
            if loaded is not None:
                setattr(loaded, step.name.rpartition(".")[2], child)
            loaded = child
    except Exception as exc:  # any import-time failure of user code
        raise _import_failed(module, exc, "fix the module in its repository") from exc
    finally:
        _restore(shadowed, before)
    assert loaded is not None  # steps is never empty
    return loaded


def _loaded_from(module: ModuleType, step: trust.Step) -> bool:
    """True if ``module`` (found in ``sys.modules``) is the checkout's own ``step``."""
    file = getattr(module, "__file__", None)
    if step.file is not None:
        return file is not None and Path(file).resolve() == step.file
    locations = [Path(p).resolve() for p in getattr(module, "__path__", [])]
    return file is None and step.folder in locations


def _execute(step: trust.Step) -> ModuleType:
    """Create and run the module of ``step`` from its own file, registered in sys.modules."""
    locations = [str(step.folder)] if step.folder is not None else None
    if step.file is None:
        spec: importlib.machinery.ModuleSpec | None = importlib.machinery.ModuleSpec(
            step.name, None, is_package=True
        )
        assert spec is not None
        spec.submodule_search_locations = locations
    else:
        spec = importlib.util.spec_from_file_location(
            step.name, step.file, submodule_search_locations=locations
        )
    if spec is None:  # pragma: no cover - only for files that are not .py
        raise ImportError(f"cannot load {step.file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[step.name] = module
    if spec.loader is None:
        return module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if sys.modules.get(step.name) is module:
            del sys.modules[step.name]
        raise
    return module


def _restore(shadowed: Mapping[str, ModuleType | None], before: set[str]) -> None:
    """Give back the names a checkout module took from the standard library or the worker.

    Everything loaded under those top-level names is dropped from
    ``sys.modules`` (the worker's functions keep their own references).
    """
    if not shadowed:
        return
    tops = {name.partition(".")[0] for name in shadowed}
    for name in set(sys.modules) - before:
        if name.partition(".")[0] in tops:
            del sys.modules[name]
    for name, previous in shadowed.items():
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous


def _import_failed(module: str, exc: Exception, hint: str) -> ConfigurationError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigurationError(f"cannot import the processor module {module!r}: {first}; {hint}")
