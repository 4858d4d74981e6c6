"""Code trust: a processor's module is a file of its checkout, a task a function it defines."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyfi import trust
from pyfi.errors import CodeNotAllowed, ConfigurationError, DeployError
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.worker import registry

TASKS = """
from subprocess import getoutput
import os.path
from os import system as run
from functools import lru_cache, partial
from . import helper


def double(value):
    return helper.twice(value)


@lru_cache(maxsize=8)
def cached(value):
    return value


alias = getoutput
halve = partial(divmod, 2)


class Shape:
    pass


def _private():
    return 1
"""


@pytest.fixture
def package() -> str:
    """A package name no other test (or installed module) uses."""
    return f"flows_{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _forget_loaded_modules() -> Iterator[None]:
    """Leave sys.modules and sys.path as they were: each test loads its own tree."""
    modules, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        file = root / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return root


def _checkout(tmp_path: Path, package: str) -> Path:
    """A checkout holding ``<package>/__init__.py``, a namespace folder ``ns`` and two modules."""
    return _tree(
        tmp_path / "checkout",
        {
            f"{package}/__init__.py": "",
            f"{package}/ns/tasks.py": TASKS,
            f"{package}/ns/helper.py": "def twice(value):\n    return 2 * value\n",
        },
    )


@pytest.mark.parametrize("module", ["subprocess", "os", "builtins", "os.path", "json.decoder"])
def test_module_outside_the_checkout_is_refused(tmp_path: Path, module: str) -> None:
    # Given a checkout that holds no such file
    checkout = _tree(tmp_path / "checkout", {"flows.py": "def f():\n    return 1\n"})
    # When a standard library module is asked for
    with pytest.raises(CodeNotAllowed) as caught:
        registry.import_module(module, checkout)
    # Then it is refused in one line that says it is not the checkout's file
    message = caught.value.message
    assert f"processor module {module!r} is not a file of its checkout" in message
    assert "\n" not in message


def test_module_in_a_package_with_a_namespace_folder_loads_from_the_checkout(
    tmp_path: Path, package: str
) -> None:
    # Given a package whose 'ns' folder has no __init__.py
    checkout = _checkout(tmp_path, package)
    # When its module is loaded and a task resolved
    module = registry.import_module(f"{package}.ns.tasks", checkout)
    # Then it is the checkout's file, and relative imports work
    assert Path(module.__file__ or "").resolve() == checkout / package / "ns" / "tasks.py"
    assert trust.check_task(module, "double")(4) == 8
    assert sys.modules[f"{package}.ns"].tasks is module


def test_module_found_under_src(tmp_path: Path, package: str) -> None:
    # Given a checkout with the src layout
    checkout = _tree(tmp_path / "checkout", {f"src/{package}.py": "def f():\n    return 7\n"})
    # When its module is loaded
    module = registry.import_module(package, checkout)
    # Then it comes from src/
    assert trust.check_task(module, "f")() == 7


def test_namespace_folder_as_the_module_is_refused(tmp_path: Path, package: str) -> None:
    # Given a package folder without __init__.py
    checkout = _checkout(tmp_path, package)
    # When the folder itself is named as the module
    # Then it is refused: it holds no functions
    with pytest.raises(CodeNotAllowed, match=r"folder without __init__\.py"):
        registry.import_module(f"{package}.ns", checkout)


def test_symlink_out_of_the_checkout_is_refused(tmp_path: Path, package: str) -> None:
    # Given a module file and a package folder that are symlinks to files outside
    outside = _tree(tmp_path / "outside", {"evil.py": "def f():\n    return 1\n"})
    checkout = _tree(tmp_path / "checkout", {"ok.py": ""})
    (checkout / f"{package}.py").symlink_to(outside / "evil.py")
    (checkout / f"{package}_dir").symlink_to(outside, target_is_directory=True)
    # When either is asked for
    # Then both are refused, naming where they lead
    with pytest.raises(CodeNotAllowed, match="outside its checkout") as caught:
        registry.import_module(package, checkout)
    assert str(outside / "evil.py") in caught.value.message
    with pytest.raises(CodeNotAllowed, match="outside its checkout"):
        registry.import_module(f"{package}_dir.evil", checkout)


def test_symlink_inside_the_checkout_is_followed(tmp_path: Path, package: str) -> None:
    # Given a module that is a symlink to another file of the same checkout
    checkout = _tree(tmp_path / "checkout", {"real/impl.py": "def f():\n    return 3\n"})
    (checkout / f"{package}.py").symlink_to(checkout / "real" / "impl.py")
    # When it is loaded
    module = registry.import_module(package, checkout)
    # Then it runs
    assert trust.check_task(module, "f")() == 3


def test_checkout_module_shadowing_the_standard_library_loads_its_own_file(
    tmp_path: Path,
) -> None:
    # Given a checkout whose json.py defines its own function, while the worker holds json
    shout = "def shout(text):\n    return text.upper()\n"
    checkout = _tree(tmp_path / "checkout", {"json.py": shout})
    standard = sys.modules["json"]
    # When the processor's module 'json' is loaded
    module = registry.import_module("json", checkout)
    # Then it is the checkout's file, not the cached standard module
    assert trust.check_task(module, "shout")("hi") == "HI"
    assert module is not standard
    # And the worker's own imports of json still get the standard library
    assert sys.modules["json"] is standard
    assert json.dumps([1]) == "[1]"


def test_module_loaded_again_is_the_same_object(tmp_path: Path, package: str) -> None:
    # Given a module already loaded from the checkout
    checkout = _checkout(tmp_path, package)
    first = registry.import_module(f"{package}.ns.tasks", checkout)
    # When it is loaded again
    # Then the loaded module is reused (its top level does not run twice)
    assert registry.import_module(f"{package}.ns.tasks", checkout) is first


def test_module_import_failure_is_one_line(tmp_path: Path, package: str) -> None:
    # Given a module that raises while it is imported
    failing = "raise RuntimeError('boom\\nmore')\n"
    checkout = _tree(tmp_path / "checkout", {f"{package}.py": failing})
    # When it is loaded
    with pytest.raises(ConfigurationError) as caught:
        registry.import_module(package, checkout)
    # Then the first line of the cause is reported, and nothing half-loaded stays
    assert "boom" in caught.value.message
    assert "\n" not in caught.value.message
    assert package not in sys.modules


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("getoutput", "is defined in 'subprocess' and only imported here"),
        ("alias", "is defined in 'subprocess' and only imported here"),
        ("run", "is a built-in function, not a function defined there"),
        ("Shape", "is a class, not a function"),
        ("halve", "is a partial, not a function"),
        ("os", "is a module, not a function"),
        ("_private", "invalid task '_private'"),
        ("__import__", "invalid task '__import__'"),
        ("__builtins__", "invalid task '__builtins__'"),
        ("print", "has no function 'print'"),
        ("missing", "has no function 'missing'"),
    ],
)
def test_task_that_the_module_does_not_define_is_refused(
    tmp_path: Path, package: str, task: str, expected: str
) -> None:
    # Given a module that imports, aliases and defines names of every kind
    module = registry.import_module(f"{package}.ns.tasks", _checkout(tmp_path, package))
    # When a task that is not one of its public functions is checked
    with pytest.raises(CodeNotAllowed) as caught:
        trust.check_task(module, task)
    # Then it is refused with the reason, in one line
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


def test_decorated_function_is_a_task(tmp_path: Path, package: str) -> None:
    # Given a function of the module wrapped by a decorator (functools.lru_cache)
    module = registry.import_module(f"{package}.ns.tasks", _checkout(tmp_path, package))
    # When it is checked
    # Then the wrapper is accepted: what it wraps is defined in the module
    assert trust.check_task(module, "cached")(5) == 5


def test_resolve_checks_every_socket_task(tmp_path: Path, package: str) -> None:
    # Given a processor with one proper socket and one on an imported function
    checkout = _checkout(tmp_path, package)
    spec = ProcessorSpec(
        name="p",
        module=f"{package}.ns.tasks",
        retries=0,
        retry_delay_s=0,
        sockets=(_socket("p.double", "double"), _socket("p.shell", "getoutput")),
    )
    # When the worker resolves its functions
    # Then the imported one is refused
    with pytest.raises(CodeNotAllowed, match="'getoutput'"):
        registry.resolve(spec, checkout)


def _socket(name: str, task: str) -> SocketSpec:
    route: Any = None  # never used by resolve
    return SocketSpec(name, "id", task, "queue", route, False, (), ())


def test_installed_module_needs_its_package_allowed() -> None:
    # Given a worker started without a checkout
    # When the module is in the standard library or pyfi, it is refused even if allowed
    with pytest.raises(CodeNotAllowed, match="standard library"):
        registry.import_module("subprocess", installed=("subprocess",))
    with pytest.raises(CodeNotAllowed, match="pyfi package"):
        registry.import_module("pyfi.agent.venv", installed=("pyfi",))
    # And an installed package is refused unless named by --allow-installed
    with pytest.raises(CodeNotAllowed, match="--allow-installed pytest"):
        registry.import_module("pytest")
    assert registry.import_module("pytest", installed=("pytest",)) is pytest


@pytest.mark.parametrize("name", ["flows", "flows.text", "_impl.tasks", "a1.b_2"])
def test_module_name_check_accepts_dotted_identifiers(name: str) -> None:
    assert trust.check_module_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a..b", ".a", "a.", "__main__", "pkg.__init__", "os/path", "a b", "class", "1a"]
)
def test_module_name_check_refuses_what_names_no_processor_module(name: str) -> None:
    with pytest.raises(CodeNotAllowed, match="invalid processor module"):
        trust.check_module_name(name)


@pytest.mark.parametrize("name", ["", "_x", "__import__", "a-b", "def", "1a", "a.b", "a b"])
def test_task_name_check_refuses_private_and_malformed_names(name: str) -> None:
    with pytest.raises(CodeNotAllowed, match="invalid task"):
        trust.check_task_name(name)


def test_agent_check_reads_the_source_without_running_it(tmp_path: Path, package: str) -> None:
    # Given a module whose import would leave a trace
    marker = tmp_path / "ran"
    checkout = _checkout(tmp_path, package)
    source = checkout / package / "ns" / "tasks.py"
    source.write_text(f"open({str(marker)!r}, 'w').close()\n" + source.read_text())
    module = f"{package}.ns.tasks"
    # When the agent checks proper tasks (a def, a decorated def, an assignment)
    assert trust.check_code(checkout, module, ["double", "cached", "halve"]) == source
    # Then nothing ran, and an imported name, a class and an unbound name are refused
    assert not marker.exists()
    for task, expected in [
        ("getoutput", "is imported into it"),
        ("run", "is imported into it"),
        ("Shape", "is a class"),
        ("print", "is not defined at its top level"),
    ]:
        with pytest.raises(CodeNotAllowed, match=expected):
            trust.check_code(checkout, module, ["double", task])


def test_agent_check_reports_a_module_that_does_not_parse(tmp_path: Path, package: str) -> None:
    # Given a module with a syntax error
    checkout = _tree(tmp_path / "checkout", {f"{package}.py": "def f(:\n"})
    # When the agent checks it
    # Then the deploy fails with the line, in one line
    with pytest.raises(DeployError, match=r"does not parse: .* at line 1") as caught:
        trust.check_code(checkout, package, ["f"])
    assert "\n" not in caught.value.message
