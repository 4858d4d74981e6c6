"""Which git repositories an agent may deploy: the ``allowed_repos`` globs.

An agent runs whatever code its processors' repositories contain, and anyone
who can write a processor row chooses the repository. The allowlist is the
host owner's say in that: a repository is deployed only if its URL matches one
of the ``allowed_repos`` glob patterns (:func:`fnmatch.fnmatchcase`).

Decisions, safest first:

- **An empty list allows nothing.** Forgetting to configure the agent must not
  open it to every repository on the internet. ``*`` allows everything, and
  has to be written out; ``file://*`` allows the repositories already on the
  host (the embedded, single-machine setup); ``https://github.com/myorg/*``
  allows one organisation. End a host with ``/``: ``https://github.com*``
  would also match ``https://github.com.evil.example/``.
- **Patterns match the URL without credentials**, so a token in the URL
  neither has to be written into the pattern nor can smuggle in another host
  (``https://github.com@evil.example/`` is matched as ``https://evil.example/``).
  Scheme and host are lower-cased first; the path is case-sensitive.
- **Dot segments are refused** (``/myorg/../other/repo``, also percent-encoded):
  git and curl resolve them, so they would escape a ``/myorg/*`` pattern.
  So are URLs with whitespace, control characters or backslashes, and URLs
  that start with ``-`` (they would read as an option).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from urllib.parse import unquote

from pyfi.agent.text import split_url
from pyfi.errors import RepoNotAllowed

_BAD_CHARACTERS = re.compile(r"[\s\\\x00-\x1f\x7f]")

SETTING_HINT = (
    "add a matching glob to the allowed_repos setting "
    "(PYFI_ALLOWED_REPOS, or allowed_repos in the [agent] section of the ini file)"
)


def repo_allowed(url: str, patterns: Sequence[str]) -> bool:
    """Whether ``url`` may be deployed under ``patterns``.

    Parameters
    ----------
    url:
        The repository URL, possibly with embedded credentials.
    patterns:
        ``allowed_repos`` globs; an empty sequence allows nothing.

    Returns
    -------
    bool
        True if the URL is well formed and matches at least one pattern.
    """
    return _refusal(url, patterns) is None


def check_repo(url: str, patterns: Sequence[str]) -> None:
    """Raise unless ``url`` may be deployed under ``patterns``.

    Raises
    ------
    RepoNotAllowed
        With one line naming the masked URL, the reason and how to allow it.
    """
    reason = _refusal(url, patterns)
    if reason is not None:
        raise RepoNotAllowed(
            f"repository {split_url(url).display} is not allowed on this agent: {reason}"
        )


def _refusal(url: str, patterns: Sequence[str]) -> str | None:
    """Why ``url`` is refused, or None if it is allowed."""
    if not url or url.startswith("-") or _BAD_CHARACTERS.search(url):
        return "the URL is malformed (empty, an option, or with spaces or control characters)"
    public = split_url(url).public
    if _has_dot_segment(public):
        return "the URL has '.' or '..' path segments; write the path without them"
    active = [p.strip() for p in patterns if p.strip()]
    if not active:
        return f"allowed_repos is empty, so no repository is; {SETTING_HINT}"
    if any(fnmatch.fnmatchcase(public, pattern) for pattern in active):
        return None
    return f"it matches none of allowed_repos ({', '.join(active)}); {SETTING_HINT}"


def _has_dot_segment(url: str) -> bool:
    """True if a path segment of ``url`` is ``.`` or ``..`` (decoded)."""
    path = url.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0]
    return any(unquote(segment) in (".", "..") for segment in re.split(r"[/:]", path))
