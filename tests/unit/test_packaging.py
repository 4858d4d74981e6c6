"""The wheel must contain every package: pyproject lists them by hand."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_packaging_lists_every_package_directory() -> None:
    # Given the packages declared in pyproject.toml
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(config["tool"]["setuptools"]["packages"])
    # When every folder with an __init__.py under pyfi/ and migrations/ is collected
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "pyfi").rglob("__init__.py")
    }
    # A folder of modules without __init__.py would import from a checkout
    # (as a namespace package) yet be missing from the wheel.
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "pyfi").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert folders <= found, sorted(folders - found)
    found |= {
        "pyfi." + ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "migrations").rglob("__init__.py")
    }
    # Then each one is declared (else `pip install .` would silently leave it out)
    assert found <= declared, sorted(found - declared)
