"""Deploy one processor on this host: allowlist, checkout, virtualenv.

The agent's reconcile loop calls :func:`deploy` with a processor's fields and
gets back the interpreter its workers must run (``python -m pyfi.cli worker
start --processor NAME --path CHECKOUT``). Each step is idempotent and cheap
when already done, so deploying an unchanged processor again costs one
``git ls-remote`` (none at all when the commit is pinned) and a few stats.

The steps raise one-line errors for the agent to record against the
processor: :class:`~pyfi.errors.RepoNotAllowed` (the host owner has not
allowed the repository), :class:`~pyfi.errors.CodeNotAllowed` (the module is
not a file of the checkout, a task is not a function it defines, or a
requirement is a URL outside ``allowed_repos``; see :mod:`pyfi.trust` and
:mod:`pyfi.agent.requirements`), :class:`~pyfi.errors.GitError` and
:class:`~pyfi.errors.VenvError` (both :class:`~pyfi.errors.DeployError`), and
:class:`~pyfi.errors.InvalidValue` for requirements that are pip options.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyfi.agent import venv as _venv
from pyfi.agent.allowlist import check_repo
from pyfi.agent.checkout import DEFAULT_TIMEOUT_S, Checkout, checkout
from pyfi.agent.requirements import DEFAULT_INDEXES, check_requirements
from pyfi.agent.text import display_url, first_error_line
from pyfi.trust import check_code

__all__ = ["Deployment", "deploy", "first_error_line"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """A processor's code, ready to run: its checkout and its venv's interpreter."""

    python: Path
    checkout: Checkout

    def worker_command(self, processor: str) -> list[str]:
        """The command that starts a worker of ``processor`` from this deployment.

        ``--path`` puts the checkout first on ``sys.path``, so a repository
        that is not an installable project works too.
        """
        return [
            str(self.python),
            "-m",
            "pyfi.cli",
            "worker",
            "start",
            "--processor",
            processor,
            "--path",
            str(self.checkout.path),
        ]


def deploy(
    *,
    url: str,
    branch: str | None,
    commit: str | None,
    requirements: str | None,
    workdir: Path,
    cache_root: Path,
    allowed: Sequence[str],
    module: str | None = None,
    tasks: Sequence[str] = (),
    indexes: Sequence[str] = DEFAULT_INDEXES,
    pyfi_requirement: str | None = None,
    git_timeout_s: float = DEFAULT_TIMEOUT_S,
    pip_timeout_s: float = _venv.DEFAULT_PIP_TIMEOUT_S,
) -> Deployment:
    """Check out a processor's commit and build (or reuse) its virtualenv.

    Parameters
    ----------
    url:
        The processor's ``gitrepo``; embedded credentials are used, never stored.
    branch:
        Its branch (None or empty: ``main``).
    commit:
        Its commit (full or abbreviated sha), or None for the branch head.
    requirements:
        Its extra pip requirements (whitespace or newline separated), or None.
    workdir:
        This processor's folder; each commit is checked out in ``<workdir>/<sha>``.
    cache_root:
        The folder of cached virtualenvs, shared by all processors of the host.
    allowed:
        The ``allowed_repos`` globs (see :mod:`pyfi.agent.allowlist`).
    module, tasks:
        The processor's module and its sockets' tasks, checked in the
        checkout before anything is installed (:func:`pyfi.trust.check_code`);
        None skips the check (a caller that only builds the code).
    indexes:
        The ``allowed_indexes`` pip installs named requirements from.
    pyfi_requirement:
        How to install pyfi into the venv; default: the running pyfi
        (:func:`pyfi.agent.venv.pyfi_requirement`).
    git_timeout_s, pip_timeout_s:
        Bounds on one git command and on the pip install.

    Returns
    -------
    Deployment
        The venv's python and the checkout.

    Raises
    ------
    RepoNotAllowed
        The repository matches none of ``allowed``; nothing was fetched.
    GitError
        Cloning or checking out failed (git's reason, credentials masked).
    CodeNotAllowed
        The module or a task is not the checkout's own code, or a requirement
        is a URL outside ``allowed``; nothing was installed.
    InvalidValue
        A requirement is a pip option, a local path or not a requirement.
    VenvError
        Building the virtualenv failed (pip's reason); nothing is cached.
    """
    check_repo(url, allowed)
    check_requirements(requirements, allowed)  # before fetching anything
    code = checkout(url, branch or "main", commit, workdir, timeout_s=git_timeout_s)
    if module is not None:
        check_code(code.path, module, tasks)
    python = _venv.ensure_venv(
        code,
        requirements,
        cache_root,
        pyfi_requirement or _venv.pyfi_requirement(),
        timeout_s=pip_timeout_s,
        allowed_repos=allowed,
        indexes=indexes,
    )
    log.info("deployed %s at %s: %s", display_url(url), code.commit[:12], python)
    return Deployment(python=python, checkout=code)
