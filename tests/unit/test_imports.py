"""Each database-side module imports on its own, first, in a fresh interpreter.

``pyfi.db.session`` imports ``pyfi.db.changes`` at its end (to register the
change announcer), so a module both of them use could import fine after
``session`` and fail when imported first: which one comes first depends on
the entry point (a CLI command, a worker's recorder thread).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import pyfi.db
import pyfi.recorder


def _modules() -> list[str]:
    names = []
    for package in (pyfi.db, pyfi.recorder):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            names.append(info.name)
    return names


@pytest.mark.parametrize("chunk", [0, 1])
def test_each_database_side_module_imports_first_in_a_fresh_interpreter(chunk: int) -> None:
    # Given half of the modules (two tests, so a failure names fewer suspects)
    modules = _modules()[chunk::2]
    assert modules

    # When each is the first pyfi module a fresh interpreter imports
    def imports(module: str) -> tuple[str, int, str]:
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        last_line = done.stderr.strip().splitlines()[-1:]
        return module, done.returncode, "".join(last_line)

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [result for result in pool.map(imports, modules) if result[1] != 0]

    # Then none fails
    assert failures == []
