"""Build (once) the isolated virtualenv a processor's workers run in.

Each virtualenv holds the processor's checkout, its ``requirements`` and pyfi
itself (the workers run ``python -m pyfi.cli worker start``), and nothing of
the agent's own site-packages. Building one takes a while, so they are cached
under ``<cache_root>/<key>``, where the key is a sha256 of everything that
decides their content: the public repository URL, the commit, the normalised
requirements, the pyfi requirement and the interpreter. A second deploy with
the same key returns at once, without pip.

Why build in place rather than in a temporary folder renamed at the end:
virtualenv venvs are *not* relocatable. After a rename ``bin/python`` still
works, but every console script pip installed (``bin/pip``, ``bin/flow``)
keeps the old path in its shebang and fails with "required file not found",
and ``bin/activate`` points at the old folder. So the venv is built at its
final path while an exclusive ``fcntl`` lock on ``<cache_root>/.<key>.lock``
keeps other agents and threads out, and a marker file written last (atomically)
says "complete". A folder without the marker is the remains of a crash and is
removed before building again; a failed build removes its folder at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pyfi.agent.checkout import Checkout
from pyfi.agent.requirements import DEFAULT_INDEXES, check_requirements, index_options
from pyfi.agent.text import first_error_line
from pyfi.errors import VenvError
from pyfi.masking import mask_url, mask_urls_in

log = logging.getLogger(__name__)

MARKER = ".pyfi-ready"
DEFAULT_PIP_TIMEOUT_S = 1800.0
# Variables that would let the venv's interpreter see the agent's packages.
_LEAKY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PIP_USER")


def ensure_venv(
    checkout: Checkout,
    requirements: str | None,
    cache_root: Path,
    pyfi_requirement: str,
    *,
    timeout_s: float = DEFAULT_PIP_TIMEOUT_S,
    allowed_repos: Sequence[str] = (),
    indexes: Sequence[str] = DEFAULT_INDEXES,
) -> Path:
    """The python executable of the processor's virtualenv, built if needed.

    Parameters
    ----------
    checkout:
        The processor's code; installed into the venv if it is a project
        (``pyproject.toml``, ``setup.py`` or ``setup.cfg``), else only imported
        from its folder by the worker (``--path``).
    requirements:
        Extra requirements, separated by whitespace or newlines (one with a
        marker alone on its line); ``#`` starts a comment. Checked by
        :func:`pyfi.agent.requirements.check_requirements`.
    cache_root:
        The folder holding every cached venv.
    pyfi_requirement:
        How to install pyfi, usually :func:`pyfi_requirement`.
    timeout_s:
        How long ``pip install`` may take.
    allowed_repos:
        The globs a requirement that is a URL must match.
    indexes:
        The package indexes pip may use (``allowed_indexes``).

    Returns
    -------
    Path
        ``<cache_root>/<key>/bin/python``.

    Raises
    ------
    InvalidValue
        A requirement is a pip option (``-e``, ``--index-url``...), a local
        path or not a requirement: they could redirect installs or read files.
    CodeNotAllowed
        A requirement is a URL that matches none of ``allowed_repos``.
    VenvError
        virtualenv or ``pip install`` failed; the message is pip's reason.
        Nothing is left in the cache.
    """
    specifiers = check_requirements(requirements, allowed_repos)
    key = venv_key(checkout, specifiers, pyfi_requirement, indexes)
    venv = cache_root / key
    python = venv / "bin" / "python"
    if (venv / MARKER).is_file():
        return python
    cache_root.mkdir(parents=True, exist_ok=True)
    with _locked(cache_root / f".{key}.lock"):
        if (venv / MARKER).is_file():  # built by whoever held the lock before us
            return python
        if venv.exists():
            log.warning("removing the incomplete virtualenv %s", venv)
            shutil.rmtree(venv)
        started = time.monotonic()
        try:
            _create(venv, checkout)
            targets = [*_project(checkout), *specifiers, pyfi_requirement]
            _pip_install(python, venv, targets, checkout, timeout_s, index_options(indexes))
            _check_pyfi(python, pyfi_requirement)
            _write_marker(venv, checkout, specifiers, pyfi_requirement, started)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    log.info("built %s in %.1fs", venv, time.monotonic() - started)
    return python


def normalise_requirements(text: str | None, allowed_repos: Sequence[str] = ()) -> list[str]:
    """The requirement entries in ``text``: checked, deduplicated, sorted.

    Raises
    ------
    InvalidValue
        An entry is a pip option, a local path or not a requirement.
    CodeNotAllowed
        An entry is a URL outside ``allowed_repos``.
    """
    return check_requirements(text, allowed_repos)


def venv_key(
    checkout: Checkout,
    specifiers: list[str],
    pyfi_requirement: str,
    indexes: Sequence[str] = DEFAULT_INDEXES,
) -> str:
    """The cache key: a sha256 of everything that decides the venv's content."""
    identity = {
        "url": checkout.url,
        "commit": checkout.commit,
        "requirements": specifiers,
        "indexes": index_options(indexes),
        "pyfi": pyfi_requirement,
        "pyfi_build": pyfi_fingerprint(pyfi_requirement),
        "python": [sys.version, sys.base_prefix],
    }
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def pyfi_fingerprint(requirement: str) -> str:
    """What version of pyfi a local requirement holds right now.

    A folder or wheel keeps its path across upgrades, so the path alone would
    let cached venvs keep running an old pyfi: the sizes and modification
    times of its files (a cheap stat each) tell the builds apart.
    """
    path = Path(requirement)
    if not path.exists():
        return requirement  # a git URL pins its commit in the string already
    if path.is_file():
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    files = sorted([*(path / "pyfi").rglob("*.py"), path / "pyproject.toml"])
    digest = hashlib.sha256()
    for file in files:
        if file.exists():
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def pyfi_requirement() -> str:
    """How to install the running pyfi into a venv, as one pip argument.

    Returns
    -------
    str
        The source folder if pyfi was installed from a local directory
        (PEP 610 ``direct_url.json``, e.g. an editable install) or runs from
        a source tree; ``pyfi @ git+URL@COMMIT`` if it was installed from git;
        the wheel file if it was installed from a local wheel that still exists.

    Raises
    ------
    VenvError
        None of those: never guess a package index name, because ``pyfi`` on
        PyPI is an unrelated project.
    """
    from importlib import metadata

    dists = list(metadata.distributions(name="pyfi"))
    for dist in dists:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
        url = str(info.get("url", ""))
        if "dir_info" in info and url.startswith("file://"):
            return unquote(urlsplit(url).path)
        vcs = info.get("vcs_info")
        if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
            return f"pyfi @ {vcs['vcs']}+{url}@{vcs['commit_id']}"
        if "archive_info" in info and url.startswith("file://"):
            wheel = Path(unquote(urlsplit(url).path))
            if wheel.exists():
                return str(wheel)
    source = _source_tree()
    if source is not None:
        return str(source)
    raise VenvError(
        "cannot tell how to install pyfi into processor virtualenvs: install pyfi from its "
        "source folder (pip install DIR), a git URL or a local wheel file"
    )


def _source_tree() -> Path | None:
    """The pyfi project folder the running code comes from, if it is a source tree."""
    import tomllib

    import pyfi

    root = Path(pyfi.__file__).resolve().parent.parent
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if project.get("project", {}).get("name") == "pyfi" else None


def _project(checkout: Checkout) -> list[str]:
    """The checkout as a pip target, if it is an installable project."""
    if any(
        (checkout.path / name).is_file() for name in ("pyproject.toml", "setup.py", "setup.cfg")
    ):
        return [str(checkout.path)]
    log.info("%s is not a Python project; workers import it from its folder", checkout.path)
    return []


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (waits for the holder)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _create(venv: Path, checkout: Checkout) -> None:
    """Create an empty virtualenv (no system site-packages) at ``venv``."""
    import virtualenv

    args = [str(venv), "--no-periodic-update", "--quiet"]
    try:
        virtualenv.cli_run(args, setup_logging=False)
    except (Exception, SystemExit) as exc:  # virtualenv exits on bad arguments
        reason = first_error_line(str(exc), type(exc).__name__)
        raise VenvError(
            f"cannot create a virtualenv for {mask_url(checkout.url)} at {venv}: {reason}"
        ) from exc


def _pip_install(
    python: Path,
    venv: Path,
    targets: list[str],
    checkout: Checkout,
    timeout_s: float,
    indexes: list[str],
) -> None:
    """``python -m pip install INDEXES TARGETS``; VenvError with pip's reason if it fails.

    ``indexes`` (``--index-url`` and ``--extra-index-url`` options) are not
    logged: an index URL may carry a token.
    """
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_VARIABLES}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    command = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    where = f"{mask_url(checkout.url)} at {checkout.commit[:12]}"
    # Requirements may be URLs with tokens, and pip quotes the URLs it fails on.
    log.info("installing %s into %s", mask_urls_in(" ".join(targets)), venv)
    try:
        result = subprocess.run(
            [*command, *indexes, *targets],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise VenvError(f"cannot install {where}: pip took longer than {timeout_s:g}s") from exc
    if result.returncode != 0:
        output = mask_urls_in(result.stderr or result.stdout)
        reason = first_error_line(output, f"pip exited {result.returncode}")
        raise VenvError(f"cannot install {where}: {reason}")


def _check_pyfi(python: Path, requirement: str) -> None:
    """Fail unless the venv imports *this* pyfi's CLI.

    The name ``pyfi`` on PyPI belongs to an unrelated project, so a plain
    ``pyfi==<version>`` can install something else entirely; workers would
    then die at start with a confusing ImportError.
    """
    probe = subprocess.run(
        [str(python), "-c", "import pyfi.cli"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        reason = first_error_line(probe.stderr, "import failed")
        raise VenvError(
            f"installing {requirement!r} did not give the venv pyfi's CLI ({reason}); "
            "install the agent's pyfi from a local folder, a wheel or git"
        )


def _write_marker(
    venv: Path, checkout: Checkout, specifiers: list[str], pyfi: str, started: float
) -> None:
    """Write the marker last and atomically: its presence means "complete"."""
    info = {
        "url": checkout.url,
        "commit": checkout.commit,
        "requirements": specifiers,
        "pyfi": pyfi,
        "seconds": round(time.monotonic() - started, 1),
    }
    tmp = venv / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, venv / MARKER)
