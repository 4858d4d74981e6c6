"""Check out one commit of a processor's repository, once per host (GitPython).

Each commit gets its own folder, ``<dest_root>/<full sha>``, so workers of an
old commit keep running while a new one is deployed beside them, and a commit
that is already there is reused without touching the network. A clone is
made in a hidden temporary folder and renamed into place only when complete
(git folders are relocatable), so a crash or a concurrent agent never leaves a
half-checked-out commit under a sha name.

Credentials never reach the disk, the command line or a message: git clones
the *public* URL (it writes that one into ``.git/config``), and answers its
own username and password prompts through :mod:`pyfi.agent.askpass`, from
variables set only in the environment of that git process. While credentials
are in play the credential helpers are switched off, so a ``store`` helper
configured on the host cannot save them either. ``GIT_TERMINAL_PROMPT=0``
makes a wrong credential fail instead of waiting for a keyboard.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyfi.agent.askpass import ENV_PASSWORD, ENV_USERNAME
from pyfi.agent.text import RepoUrl, first_error_line, redact, split_url
from pyfi.errors import GitError

log = logging.getLogger(__name__)

# Environment variables, declared once.
ENV_ASKPASS_PYTHON = "PYFI_ASKPASS_PYTHON"

# Git may only speak these; "ext::" would run arbitrary commands.
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
DEFAULT_TIMEOUT_S = 600.0
_SHA = re.compile(r"[0-9a-f]{4,40}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
# A POSIX shell wrapper, because git runs GIT_ASKPASS as one program. It
# holds no secret and no path: the interpreter comes from the environment.
_ASKPASS_SCRIPT = f'#!/bin/sh\nexec "${ENV_ASKPASS_PYTHON}" -m pyfi.agent.askpass "$@"\n'


@dataclass(frozen=True)
class Checkout:
    """One commit of a repository, checked out (detached HEAD) on this host."""

    path: Path
    commit: str
    branch: str
    url: str  # the public URL: credentials removed


def checkout(
    url: str,
    branch: str,
    commit: str | None,
    dest_root: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Checkout:
    """Make ``<dest_root>/<full sha>`` hold ``commit`` (or the head of ``branch``).

    Parameters
    ----------
    url:
        The repository URL; embedded credentials are used but never stored.
    branch:
        The branch to clone; its head is deployed when ``commit`` is None.
    commit:
        A full or abbreviated (at least 4 hex digits) commit sha, or None.
    dest_root:
        The folder of this processor's checkouts; created if missing.
    timeout_s:
        How long one git command may take before it is killed.

    Returns
    -------
    Checkout
        The folder, the full sha, the branch and the public URL. A folder that
        already holds the commit is reused with no network access (when
        ``commit`` is given; a branch head must be asked for first).

    Raises
    ------
    GitError
        The URL is unreachable or not a repository, the branch or the commit
        does not exist, or the credentials were refused; the message is git's
        own reason, with credentials masked.
    """
    repo = split_url(url)
    wanted = _validate(repo, branch, commit)
    dest_root.mkdir(parents=True, exist_ok=True)
    if wanted is not None and (found := _existing(dest_root, wanted)) is not None:
        log.debug("reusing %s", found)
        return Checkout(found, found.name, branch, repo.public)
    with _git_environment(repo) as env:
        if wanted is None:
            wanted = _branch_head(repo, branch, env, timeout_s)
            if (found := _existing(dest_root, wanted)) is not None:
                log.debug("reusing %s", found)
                return Checkout(found, found.name, branch, repo.public)
        return _clone(repo, branch, wanted, dest_root, env, timeout_s)


def _validate(repo: RepoUrl, branch: str, commit: str | None) -> str | None:
    """Refuse values git would read as options or that cannot be a sha."""
    if not branch or branch.startswith("-") or any(c.isspace() for c in branch):
        raise GitError(f"cannot deploy {repo.display}: {branch!r} is not a valid branch name")
    if commit is None or not commit.strip():
        return None
    wanted = commit.strip().lower()
    if not _SHA.fullmatch(wanted):
        raise GitError(
            f"cannot deploy {repo.display}: commit {commit!r} is not a sha "
            "(expected 4 to 40 hex digits)"
        )
    return wanted


def _existing(dest_root: Path, wanted: str) -> Path | None:
    """The finished checkout of ``wanted`` (full or abbreviated) under ``dest_root``."""
    if _FULL_SHA.fullmatch(wanted):
        candidates = [dest_root / wanted]
    else:
        candidates = sorted(
            p
            for p in dest_root.iterdir()
            if p.name.startswith(wanted) and _FULL_SHA.fullmatch(p.name)
        )
        if len(candidates) > 1:
            return None  # ambiguous here; let git decide in a fresh clone
    return next((path for path in candidates if _head(path) == path.name), None)


def _head(path: Path) -> str | None:
    """The sha HEAD of ``path`` points at, or None if it is no usable repository."""
    import git

    if not (path / ".git").exists():
        return None
    try:
        return str(git.Repo(path).head.commit.hexsha)
    except (git.exc.GitError, ValueError, OSError):
        return None


def _branch_head(repo: RepoUrl, branch: str, env: Mapping[str, str], timeout_s: float) -> str:
    """The sha at the head of ``branch`` in the remote repository."""
    out = _git(repo, None, env, timeout_s, "ls-remote", "--heads", "--", repo.public, branch)
    ref = f"refs/heads/{branch}"
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name.strip() == ref:
            return sha.strip()
    raise GitError(f"cannot clone {repo.display}: branch {branch!r} does not exist")


def _clone(
    repo: RepoUrl,
    branch: str,
    wanted: str,
    dest_root: Path,
    env: Mapping[str, str],
    timeout_s: float,
) -> Checkout:
    """Clone into a temporary folder, check out ``wanted``, rename to its full sha."""
    log.info("cloning %s (branch %s, commit %s)", repo.display, branch, wanted)
    tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=dest_root))
    try:
        _git(repo, None, env, timeout_s, "clone", "--no-checkout", "--quiet",
             f"--branch={branch}", "--", repo.public, str(tmp))  # fmt: skip
        sha = _resolve(repo, tmp, wanted, env, timeout_s)
        if sha is None:
            if _FULL_SHA.fullmatch(wanted):  # maybe not on any branch: ask for it by id
                _git(repo, tmp, env, timeout_s, "fetch", "--quiet", "origin", wanted, ok=False)
                sha = _resolve(repo, tmp, wanted, env, timeout_s)
            if sha is None:
                raise GitError(
                    f"cannot check out {repo.display}: commit {wanted} does not exist "
                    f"(cloned branch {branch!r})"
                )
        _git(repo, tmp, env, timeout_s, "checkout", "--quiet", "--detach", sha)
        final = dest_root / sha
        try:
            tmp.rename(final)
        except OSError as exc:
            # Another agent finished the same commit first: use theirs.
            if _head(final) != sha:
                raise GitError(
                    f"cannot check out {repo.display}: {final} exists but does not hold "
                    f"commit {sha}; remove it and deploy again"
                ) from exc
            shutil.rmtree(tmp, ignore_errors=True)
        return Checkout(final, sha, branch, repo.public)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _resolve(
    repo: RepoUrl, cwd: Path, wanted: str, env: Mapping[str, str], timeout_s: float
) -> str | None:
    """The full sha of commit ``wanted`` in the clone at ``cwd``, or None."""
    out = _git(repo, cwd, env, timeout_s, "rev-parse", "--verify", "--quiet",
               f"{wanted}^{{commit}}", ok=False)  # fmt: skip
    sha = out.strip()
    return sha if _FULL_SHA.fullmatch(sha) else None


def _git(
    repo: RepoUrl,
    cwd: Path | None,
    env: Mapping[str, str],
    timeout_s: float,
    *args: str,
    ok: bool = True,
) -> str:
    """Run one git command; its stdout, or GitError with git's reason.

    With ``ok=False`` a failure returns ``""`` instead of raising.
    """
    import git

    runner = git.Git(str(cwd) if cwd is not None else None)
    status, out, err = runner.execute(
        [git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git", *args],
        env=dict(env),
        kill_after_timeout=timeout_s,
        with_exceptions=False,
        with_extended_output=True,
    )
    if status == 0:
        return str(out)
    if not ok:
        return ""
    verb = {"ls-remote": "clone", "clone": "clone", "fetch": "fetch"}.get(args[0], "check out")
    # Masked before a line is picked, so that shortening cannot cut a secret in two.
    reason = first_error_line(redact(str(err), repo), f"git {args[0]} exited {status}")
    raise GitError(f"cannot {verb} {repo.display}: {reason}")


@contextmanager
def _git_environment(repo: RepoUrl) -> Iterator[dict[str, str]]:
    """The extra environment of our git processes, with the askpass helper in place."""
    with tempfile.TemporaryDirectory(prefix="pyfi-askpass-") as folder:
        script = Path(folder) / "askpass"
        script.write_text(_ASKPASS_SCRIPT, encoding="utf-8")
        script.chmod(0o700)
        env = {
            "GIT_ASKPASS": str(script),
            ENV_ASKPASS_PYTHON: sys.executable,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
            "LC_ALL": "C",  # messages in English, for first_error_line
        }
        if "GIT_SSH_COMMAND" not in os.environ and "GIT_SSH" not in os.environ:
            env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"  # fail, never prompt
        if repo.has_credentials:
            env[ENV_USERNAME] = repo.username or ""
            env[ENV_PASSWORD] = repo.password or ""
            env.update(_config_env({"credential.helper": ""}))
        yield env


def _config_env(settings: Mapping[str, str]) -> dict[str, str]:
    """``GIT_CONFIG_*`` variables adding ``settings`` after any already in the environment."""
    start = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    env: dict[str, str] = {}
    for index, (key, value) in enumerate(settings.items(), start=start):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env["GIT_CONFIG_COUNT"] = str(start + len(settings))
    return env
