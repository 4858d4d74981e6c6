"""Text that leaves the agent: URLs without credentials, one-line tool errors.

A processor's ``gitrepo`` may embed credentials (``https://user:token@host/r.git``).
They must never reach git's command line or ``.git/config`` (git stores the
clone URL there in plain text), nor a log line or an error message. So every
agent module works on the *public* URL (credentials removed) and hands the
credentials to git only through the environment of one git process (see
:mod:`pyfi.agent.askpass`).

URLs without a scheme (scp-like ``git@host:org/repo.git``, plain paths) carry
no credentials we could remove and are returned unchanged. What is shown of a
URL follows the project's one masking rule (:mod:`pyfi.masking`).

Git and pip explain a failure in a screenful of output; :func:`first_error_line`
picks the line a user needs, so deploy errors stay one line like every other
pyfi error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pyfi.masking import ACCOUNT_USER_SCHEMES, MASK, mask_url, mask_urls_in

# Prefixes of the lines that carry the reason, most telling first: git's
# "fatal:", pip's "ERROR:" (its summary), then the "error:" of build back ends.
_ERROR_PREFIXES = ("fatal:", "ERROR:", "error:")
# Lines that never explain anything.
_NOISE_PREFIXES = ("WARNING:", "warning:", "hint:", "Cloning into", "Looking in", "Processing ")
_MAX_LINE = 300

# A lone username at least this long is treated as a secret (an access token).
_TOKEN_MIN_LENGTH = 8


@dataclass(frozen=True)
class RepoUrl:
    """A repository URL split into its public part and its credentials."""

    public: str
    # Never in a repr: a RepoUrl may end up in a traceback or a log line.
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def has_credentials(self) -> bool:
        """True when the original URL embedded a username or a password."""
        return self.username is not None or self.password is not None

    @property
    def display(self) -> str:
        """The URL for humans, masked by :func:`pyfi.masking.mask_url`.

        A lone username is masked too, because tokens are often passed as the
        username (``https://TOKEN@github.com/...``); so are secret query
        parameters, which stay in the public URL.
        """
        if not self.has_credentials:
            return mask_url(self.public)
        parts = urlsplit(self.public)
        user = quote(self.username or "", safe="")
        # The password's value does not matter: the masker replaces it.
        userinfo = user if self.password is None else f"{user}:x"
        return mask_url(urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}")))

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credentials of this URL that must not appear in any text."""
        found = [self.password] if self.password else []
        lone_user = self.password is None and self.username
        account = urlsplit(self.public).scheme in ACCOUNT_USER_SCHEMES
        # A short lone name such as "git" is no token, and replacing it would garble text.
        if lone_user and not account and len(self.username or "") >= _TOKEN_MIN_LENGTH:
            found.append(self.username or "")
        return tuple(found)


def split_url(url: str) -> RepoUrl:
    """Split ``url`` into its public URL and its (percent-decoded) credentials.

    Parameters
    ----------
    url:
        A git repository URL, possibly with ``user[:password]@`` in it.

    Returns
    -------
    RepoUrl
        The URL without credentials (scheme and host lower-cased, so that
        allowlist globs and cache keys do not depend on their spelling) and
        the credentials, if any.
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        return RepoUrl(public=url)
    if "://" not in url or not parts.scheme or hostname is None:
        return RepoUrl(public=url)
    host = f"[{hostname}]" if ":" in hostname else hostname
    netloc = f"{host}:{port}" if port is not None else host
    public = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return RepoUrl(public=public, username=username, password=password)


def public_url(url: str) -> str:
    """``url`` without embedded credentials."""
    return split_url(url).public


def display_url(url: str) -> str:
    """``url`` with embedded credentials masked, for messages and logs."""
    return split_url(url).display


def redact(text: str, repo: RepoUrl) -> str:
    """``text`` with every URL in it masked and ``repo``'s credentials replaced by ``***``.

    For messages that quote a tool's output: git and pip quote URLs, secret
    query parameters included, and may echo a credential outside a URL. A
    username is redacted only when it stands alone and is long enough to be a
    token: replacing a short name such as ``git`` would garble the message.
    """
    text = mask_urls_in(text)
    for secret in repo.secrets:
        text = text.replace(secret, MASK)
    return text


def first_error_line(text: str, default: str = "no error message") -> str:
    """The line of a tool's output that says what went wrong, without its prefix.

    Parameters
    ----------
    text:
        The tool's standard error (or combined output).
    default:
        What to return when ``text`` has no non-blank line.

    Returns
    -------
    str
        The first ``fatal:`` line (git), else the first ``ERROR:`` line (pip),
        else the first ``error:`` line, else the last line of a Python
        traceback, else the first line that is not a warning or progress;
        prefix removed, at most 300 characters.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for prefix in _ERROR_PREFIXES:
        for line in lines:
            if line.startswith(prefix):
                return _shorten(line[len(prefix) :].strip() or line)
    if lines and lines[0].startswith("Traceback"):
        return _shorten(lines[-1])  # a Python traceback ends with the exception
    for line in lines:
        if not line.startswith(_NOISE_PREFIXES):
            return _shorten(line)
    return default


def _shorten(line: str) -> str:
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
