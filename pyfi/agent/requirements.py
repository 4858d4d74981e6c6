"""What a processor's ``requirements`` may ask pip to install, and from where.

Installing a package runs its build code as the agent user, so the
requirements of a processor are as much its code as its repository is:

- **An entry is a package name with version specifiers** (extras and
  environment markers allowed: ``requests[socks]>=2; python_version >= "3.11"``),
  parsed by the ``packaging`` library (the parser pip itself uses). Such a
  name is installed only from the indexes the operator allows
  (``allowed_indexes``, default the standard PyPI index): the first is pip's
  ``--index-url``, the others ``--extra-index-url``. pip's own configuration
  of the agent host (``pip.conf``, ``PIP_*`` variables) is the operator's
  too and stays in force.
- **A URL is a repository**, whether written alone (``git+https://...``,
  ``https://.../x.whl``) or as a direct reference (``name @ URL``): it is
  installed only if it matches ``allowed_repos``, like a processor's
  ``gitrepo`` (:mod:`pyfi.agent.allowlist`; a VCS prefix such as ``git+`` is
  ignored for the match).
- **Anything else is refused**: pip options (``-e``, ``-r``, ``-i``,
  ``--index-url``, ``--trusted-host``...), local paths, text that is not a
  requirement.

Entries are separated by newlines or whitespace; one with spaces (a marker)
must be alone on its line. ``#`` after whitespace starts a comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from packaging.requirements import InvalidRequirement, Requirement

from pyfi.agent.allowlist import repo_allowed
from pyfi.agent.text import split_url
from pyfi.config import DEFAULT_INDEXES
from pyfi.errors import CodeNotAllowed, InvalidValue
from pyfi.masking import mask_urls_in

__all__ = ["DEFAULT_INDEXES", "check_requirements", "index_options"]

INDEX_HINT = (
    "allowed_indexes (PYFI_ALLOWED_INDEXES, or allowed_indexes in the [agent] section of "
    "the ini file)"
)
_COMMENT = re.compile(r"(^|\s)#.*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_VCS_PREFIX = re.compile(r"^(git|hg|svn|bzr)\+", re.IGNORECASE)


def check_requirements(text: str | None, allowed_repos: Sequence[str]) -> list[str]:
    """The requirement entries of ``text``: checked, deduplicated, sorted.

    Raises
    ------
    InvalidValue
        An entry is a pip option, a local path or not a requirement at all.
    CodeNotAllowed
        An entry is a URL that matches none of ``allowed_repos``.
    """
    entries: set[str] = set()
    for raw in (text or "").splitlines():
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        options = [t for t in line.split() if t.startswith("-")]
        if options:
            raise InvalidValue(
                f"requirements may hold only package names with versions or allowed URLs, "
                f"not pip options: {mask_urls_in(' '.join(options))}; indexes are the agent's "
                f"{INDEX_HINT}"
            )
        whole = _parse(line) if " " in line else None
        for entry in [whole] if whole is not None else line.split():
            entries.add(_check_entry(entry, allowed_repos))
    return sorted(entries)


def index_options(indexes: Sequence[str]) -> list[str]:
    """pip's options for installing only from ``indexes`` (the first is the main one)."""
    active = [index.strip() for index in indexes if index.strip()] or list(DEFAULT_INDEXES)
    options = ["--index-url", active[0]]
    for extra in active[1:]:
        options += ["--extra-index-url", extra]
    return options


def _parse(entry: str) -> str | None:
    try:
        return str(Requirement(entry))
    except InvalidRequirement:
        return None


def _check_entry(entry: str, allowed_repos: Sequence[str]) -> str:
    if _URL.match(entry):
        _check_url(entry, allowed_repos)
        return entry
    try:
        requirement = Requirement(entry)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise InvalidValue(
            f"requirement {mask_urls_in(entry)!r} is not a package name with versions (such as "
            f"'requests>=2.31') nor a URL: {reason}; local paths are not accepted"
        ) from exc
    if requirement.url:
        _check_url(requirement.url, allowed_repos)
    return str(requirement)


def _check_url(url: str, allowed_repos: Sequence[str]) -> None:
    """Refuse ``url`` unless allowed_repos matches it."""
    if repo_allowed(_VCS_PREFIX.sub("", url), allowed_repos):
        return
    raise CodeNotAllowed(
        f"a requirement installs from {split_url(_VCS_PREFIX.sub('', url)).display}, which "
        "matches none of allowed_repos; name the package with a version (installed from "
        "allowed_indexes) or add a matching glob to allowed_repos"
    )
