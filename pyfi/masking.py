"""The one place that decides which parts of a URL are secret, and hides them.

Every listing, export, dump, log line and error message that shows a URL (a
processor's ``gitrepo``, a database, broker or result backend URI, a URL in
``requirements`` or in a tool's error output) passes it through
:func:`mask_url`, or passes free text through :func:`mask_urls_in`. One rule,
written once, so that no door shows what another hides.

The rule, for a URL with a scheme (``scheme://...``):

* A password is replaced by ``***``; the user name before it stays visible
  (``postgresql://app:***@db/pyfi``): with a password present, the user names
  an account, and an operator needs it to tell two URLs apart.
* A user name given *alone* is replaced by ``***`` (``https://***@github.com/org/repo``),
  because that is how access tokens are passed (GitHub, GitLab, Bitbucket),
  whatever the scheme. The exception is SSH (``ssh://``, ``git+ssh://``,
  ``ssh+git://``): SSH never takes a secret in the URL (it authenticates
  with keys), so its user (``ssh://git@host/...``) is an account name and
  stays visible.
* A query or fragment parameter whose name says it holds a secret has its
  value replaced by ``***`` (``?password=***``). Names are compared
  case-insensitively, with ``-`` and ``.`` read as ``_``. A name is secret when
  its last ``_``-separated word is one of :data:`SECRET_WORDS` (``api_key``,
  ``access_token``, ``X-Amz-Signature``, ``client_secret``, ``key``) or when it
  ends with one of :data:`SECRET_SUFFIXES` (``sslpassword``, ``accesstoken``).
  Other parameters (``sslmode``, ``sslkey``, which names a file) stay visible.

scp-like git addresses (``git@github.com:org/repo.git``) have no scheme: they
are SSH, so they are shown unchanged. A URL that cannot be parsed is never
echoed, since we cannot tell where its secret is: it is shown as
:data:`UNPARSEABLE`.

The mask never appears in real credentials, so a value holding it is known to
have been masked: applying an exported network file keeps the stored secret
rather than storing ``***`` (see :func:`is_masked`). Long-running commands
mask their log lines too (:class:`MaskingFilter`).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# What stands for a URL we could not parse (and so could not mask).
UNPARSEABLE = "<unparseable URI>"

# Schemes whose user name is an account, never a secret (SSH authenticates with keys).
ACCOUNT_USER_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})

# A parameter is secret when the last word of its name is one of these...
SECRET_WORDS = frozenset(
    {
        "auth",
        "apikey",
        "credential",
        "credentials",
        "key",
        "pass",
        "passwd",
        "password",
        "pwd",
        "secret",
        "sig",
        "signature",
        "token",
    }
)
# ... or when its name ends with one of these (words run together: "sslpassword").
SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "apikey")

# A URL inside free text: a scheme, "://", then everything up to a space or a quote.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def mask_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***`` (see the module doc for the rule).

    Parameters
    ----------
    url:
        Any URL or URI; strings without a scheme are returned unchanged.

    Returns
    -------
    str
        The URL as it may be shown, or :data:`UNPARSEABLE` when it cannot be
        parsed (it is then not shown at all).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return UNPARSEABLE
    netloc = _mask_userinfo(parts.scheme.lower(), parts.netloc)
    query = _mask_parameters(parts.query)
    fragment = _mask_parameters(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # nothing secret: keep the exact spelling
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def mask_urls_in(text: str) -> str:
    """``text`` with every ``scheme://`` URL in it masked, for tool output and errors.

    Git, pip and drivers quote the URL they failed on, credentials included
    (``unable to access 'https://TOKEN@github.com/org/repo/'``).
    """
    return _URL_IN_TEXT.sub(lambda found: mask_url(found.group(0)), text)


def is_masked(value: str) -> bool:
    """True when ``value`` (a URL or a text of URLs) holds the mask, i.e. was masked."""
    return MASK in value


def has_password(url: str) -> bool:
    """True when ``url`` carries a password or a secret parameter (not just a user name).

    For warnings about where a URL was given: a lone user name is masked
    when shown, in case it is a token, but a database or broker URI names
    an account that way far more often.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return True  # we cannot tell: assume the worst
    if ":" in parts.netloc.rpartition("@")[0]:
        return True
    return _mask_parameters(parts.query) != parts.query


def is_secret_parameter(name: str) -> bool:
    """True when a query parameter called ``name`` carries a secret."""
    normal = re.sub(r"[-.]", "_", unquote(name)).lower()
    last_word = normal.rsplit("_", 1)[-1]
    return last_word in SECRET_WORDS or normal.endswith(SECRET_SUFFIXES)


class MaskingFilter(logging.Filter):
    """Masks the URLs in a log record's message and traceback, for a handler.

    The last line of defence for log files: whatever a module logs (an
    exception quoting a driver's or a tool's message, an argument that
    happens to be a URL), the line written shows no credentials.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_urls_in(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: fill it in, masked.
            record.exc_text = mask_urls_in(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


def mask_log_handlers(logger: logging.Logger | None = None) -> None:
    """Add a :class:`MaskingFilter` to every handler of ``logger`` (the root by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


def _mask_userinfo(scheme: str, netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    if not at or not userinfo:
        return netloc
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{user}:{MASK}@{hostport}"
    if scheme in ACCOUNT_USER_SCHEMES:
        return netloc
    return f"{MASK}@{hostport}"


def _mask_parameters(query: str) -> str:
    if "=" not in query:
        return query
    return "&".join(_mask_parameter(pair) for pair in query.split("&"))


def _mask_parameter(pair: str) -> str:
    name, equals, value = pair.partition("=")
    return f"{name}={MASK}" if equals and value and is_secret_parameter(name) else pair
