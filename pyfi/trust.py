"""Which processor code pyfi agrees to run: module names, module files and tasks.

Whoever can write a processor row chooses its ``module`` and its sockets'
``task`` names, and an agent deploys the processor's repository only if the
host's operator allowed it (:mod:`pyfi.agent.allowlist`). Allowing a
repository must not also allow everything importable on the host: with a
name lookup on ``sys.path``, ``-m subprocess -t getoutput`` would run shell
commands from any allowed processor. So:

- **A module is a file of the checkout.** :func:`locate_module` finds
  ``pkg/sub.py`` (or ``pkg/sub/__init__.py``) under the checkout folder, or
  under its ``src/`` folder, by looking at files only (nothing is imported),
  and refuses a module that is not there or that resolves (through a
  symlink) outside the checkout. Folders on the way may lack ``__init__.py``
  (namespace packages); the module itself must be a ``.py`` source file.
- **A task is a public function defined in that module.** Its name is an
  identifier not starting with ``_`` (:func:`check_task_name`); the object is
  a Python function, or a decorator's wrapper of one, whose ``__module__`` is
  the module itself (:func:`check_task`): not a name the module imported,
  not a builtin, not a class.
- The agent cannot import a processor's code (that would run it in the
  agent), so before starting workers it reads the module's source
  (:func:`check_task_source`) and refuses a task the module imports or
  declares as a class; the worker then makes the full check on the imported
  objects.

The names are also checked where the model is written
(:func:`check_module_name`, :func:`check_task_name`), for a clear line at
once; only the checks at deploy and at import decide.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pyfi.errors import CodeNotAllowed, DeployError

MAX_NAME_LENGTH = 200
_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TASK = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Folders of a checkout a module may be found in, in this order.
SOURCE_FOLDERS = (".", "src")


@dataclass(frozen=True)
class Step:
    """One package (or the module itself) on the way to a processor's module.

    ``file`` is the source to execute (None for a namespace folder) and
    ``folder`` the package's folder (None for a plain module).
    """

    name: str
    file: Path | None
    folder: Path | None


def check_module_name(name: str) -> str:
    """``name`` if it is a dotted module name pyfi may look up, else CodeNotAllowed.

    Each part is a Python identifier that is neither a keyword nor a dunder
    name (``__main__``, ``__init__``): those never name a processor's module.
    """
    parts = name.split(".")
    bad = (
        not name
        or len(name) > MAX_NAME_LENGTH
        or any(not _PART.fullmatch(p) or keyword.iskeyword(p) or _is_dunder(p) for p in parts)
    )
    if bad:
        raise CodeNotAllowed(
            f"invalid processor module {name!r}: use a dotted Python module name such as "
            "'flows.text' (identifiers, no '__name__' parts)"
        )
    return name


def check_task_name(name: str) -> str:
    """``name`` if it may name a socket's function, else CodeNotAllowed.

    Private and dunder names (``_helper``, ``__import__``) are never tasks: a
    module's author marks with ``_`` what is not meant to be called from outside.
    """
    if not _TASK.fullmatch(name) or keyword.iskeyword(name) or len(name) > MAX_NAME_LENGTH:
        raise CodeNotAllowed(
            f"invalid task {name!r}: a task is the name of a public function of the "
            "processor's module (letters, digits and '_', not starting with '_')"
        )
    return name


def locate_module(name: str, checkout: Path) -> list[Step]:
    """The packages and file of module ``name`` inside ``checkout``, outermost first.

    Only the file system is read. Every step is resolved (symlinks followed)
    and must stay inside the resolved checkout folder.

    Raises
    ------
    CodeNotAllowed
        The name is invalid, the module is not a ``.py`` file of the checkout
        (or of its ``src/`` folder), or it resolves outside the checkout.
    """
    check_module_name(name)
    root = checkout.resolve()
    reasons: list[str] = []
    for folder in SOURCE_FOLDERS:
        base = (root / folder).resolve()
        if not _inside(base, root) or not base.is_dir():
            continue
        try:
            return _steps(name, base, root)
        except _Missing as missing:
            reasons.append(str(missing))
    where = " or ".join(f"{f}/" if f != "." else "the checkout" for f in SOURCE_FOLDERS)
    detail = reasons[0] if reasons else f"{checkout} is not a folder"
    raise CodeNotAllowed(
        f"processor module {name!r} is not a file of its checkout ({detail}); a processor "
        f"runs only its own code: add {name.replace('.', '/')}.py to {where} of its repository"
    )


class _Missing(Exception):
    """A step of a module's path is absent (the next source folder may have it)."""


def _steps(name: str, base: Path, root: Path) -> list[Step]:
    parts = name.split(".")
    steps: list[Step] = []
    folder = base
    for index, part in enumerate(parts):
        dotted = ".".join(parts[: index + 1])
        last = index == len(parts) - 1
        package = folder / part
        init = package / "__init__.py"
        plain = folder / f"{part}.py"
        if init.is_file():  # a regular package, as Python's own finder prefers
            resolved = package.resolve()
            _contain(dotted, resolved, root)
            source = init.resolve()
            _contain(dotted, source, root)
            steps.append(Step(dotted, source, resolved))
            folder = resolved
        elif plain.is_file():
            if not last:
                raise _Missing(f"{dotted} is a module, not a package")
            resolved = plain.resolve()
            _contain(dotted, resolved, root)
            steps.append(Step(dotted, resolved, None))
        elif package.is_dir() and not last:  # a namespace folder on the way
            resolved = package.resolve()
            _contain(dotted, resolved, root)
            steps.append(Step(dotted, None, resolved))
            folder = resolved
        elif package.is_dir():
            raise CodeNotAllowed(
                f"processor module {name!r} is a folder without __init__.py (a namespace "
                "package holds no functions); name the module file inside it"
            )
        else:
            raise _Missing(f"no {plain.relative_to(base)} there")
    return steps


def _contain(dotted: str, path: Path, root: Path) -> None:
    if not _inside(path, root):
        raise CodeNotAllowed(
            f"processor module {dotted!r} resolves to {path}, outside its checkout {root} "
            "(a symlink?); a processor runs only its own code"
        )


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def check_code(checkout: Path, module: str, tasks: Iterable[str]) -> Path:
    """The file of ``module`` in ``checkout``, after checking it and ``tasks`` without running it.

    This is what an agent checks before it starts a processor's workers.

    Raises
    ------
    CodeNotAllowed
        The module is not a file of the checkout, or a task is not a function it defines.
    DeployError
        The module's source does not parse.
    """
    steps = locate_module(module, checkout)
    file = steps[-1].file
    assert file is not None  # the last step is always a file
    try:
        check_task_source(module, file, tasks)
    except SyntaxError as exc:
        raise DeployError(
            f"processor module {module!r} does not parse: {exc.msg} at line {exc.lineno} "
            f"of {file.relative_to(checkout.resolve())}; fix it in its repository"
        ) from exc
    except ValueError as exc:  # null bytes in the source
        raise DeployError(f"processor module {module!r} cannot be read: {exc}") from exc
    return file


def check_task_source(module: str, file: Path, tasks: Iterable[str]) -> None:
    """Refuse tasks the module's source does not define, without running it.

    A task is accepted here if the module binds its name at the top level by
    ``def`` or by an assignment (the worker checks what an assignment binds);
    refused if the name is only imported, is a class, or is not bound.

    Raises
    ------
    CodeNotAllowed
        With the task, the module and why.
    SyntaxError
        The module does not parse (left to the caller to report).
    """
    bindings = top_level_bindings(ast.parse(file.read_bytes(), filename=str(file)))
    for task in tasks:
        check_task_name(task)
        kind = bindings.get(task)
        if kind in ("function", "assignment"):
            continue
        if kind == "import":
            why = "is imported into it, not defined in it"
        elif kind == "class":
            why = "is a class, not a function"
        else:
            why = "is not defined at its top level (expected 'def " + task + "(...)')"
        raise CodeNotAllowed(
            f"task {task!r} of module {module!r} {why}; a socket runs only a function "
            "its processor's module defines"
        )


def top_level_bindings(tree: ast.Module) -> dict[str, str]:
    """What each module-level name is last bound by: function, class, import or assignment.

    Statements under top-level ``if``, ``try``, ``with``, ``for`` and
    ``while`` run at module level too, so their bindings count.
    """
    bindings: dict[str, str] = {}
    _bind(tree.body, bindings)
    return bindings


def _bind(body: Iterable[ast.stmt], bindings: dict[str, str]) -> None:
    for node in body:
        for name, kind in _bound_by(node):
            bindings[name] = kind
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue  # their bodies are other scopes
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                _bind(inner, bindings)
        for handler in getattr(node, "handlers", []):
            _bind(handler.body, bindings)


def _bound_by(node: ast.stmt) -> list[tuple[str, str]]:
    """The names one statement binds at module level, each with how."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return [(node.name, "function")]
    if isinstance(node, ast.ClassDef):
        return [(node.name, "class")]
    if isinstance(node, ast.Import | ast.ImportFrom):
        names = [alias.asname or alias.name.partition(".")[0] for alias in node.names]
        return [(name, "import") for name in names if name != "*"]
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [
            (name.id, "assignment")
            for target in targets
            for name in ast.walk(target)
            if isinstance(name, ast.Name)
        ]
    return []


def check_task(module: ModuleType, task: str) -> Callable[..., Any]:
    """The function ``task`` of ``module``, if the module defines it; else CodeNotAllowed.

    The attribute is read from the module's namespace (a module-level
    ``__getattr__`` is not consulted). It must be a Python function, or a
    wrapper whose ``__wrapped__`` chain ends in one (``functools.wraps``,
    ``functools.lru_cache``), and that function's ``__module__`` must be the
    module: an imported ``getoutput`` keeps ``'subprocess'``.
    """
    check_task_name(task)
    name = module.__name__
    value = vars(module).get(task)
    if value is None:
        raise CodeNotAllowed(
            f"the module {name!r} has no function {task!r}; fix the socket's --task or the module"
        )
    function = _unwrap(value)
    if inspect.isclass(value) or not inspect.isfunction(function):
        kind = _kind_of(value)
        raise CodeNotAllowed(
            f"task {task!r} of module {name!r} is {kind}, not a function defined there; "
            "a socket runs only a function its processor's module defines"
        )
    if function.__module__ != name:
        raise CodeNotAllowed(
            f"task {task!r} of module {name!r} is defined in {function.__module__!r} and only "
            "imported here; a socket runs only a function its processor's module defines"
        )
    if not callable(value):
        raise CodeNotAllowed(f"task {task!r} of module {name!r} cannot be called")
    return value  # type: ignore[no-any-return]


def _kind_of(value: Any) -> str:
    if inspect.isclass(value):
        return "a class"
    if inspect.isbuiltin(value):
        return "a built-in function"
    return f"a {type(value).__name__}"


def _unwrap(value: Any) -> Any:
    try:
        return inspect.unwrap(value)
    except ValueError:  # a __wrapped__ cycle
        return value


def is_standard_library(name: str) -> bool:
    """True if ``name``'s top-level package belongs to the standard library or the interpreter."""
    top = name.partition(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def _is_dunder(part: str) -> bool:
    return len(part) > 4 and part.startswith("__") and part.endswith("__")
