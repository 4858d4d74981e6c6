"""Result backends: where call outcomes and ``wait``-socket joins are kept.

``open_backend(url)`` picks the implementation by the URL's scheme:

``redis://``, ``rediss://``
    :class:`pyfi.backend.redis.RedisBackend`, for production meshes.
``sqlite:///path``
    :class:`pyfi.backend.sql.SQLBackend`, the embedded default: no server.
``postgresql://``
    :class:`pyfi.backend.sql.SQLBackend` too, for sites without Redis.

Each implementation is imported only when its scheme is asked for, so a
SQLite-only install never loads redis-py and vice versa.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pyfi.backend.base import ResultBackend
from pyfi.config import mask_url
from pyfi.errors import ConfigurationError

REDIS_SCHEMES = ("redis", "rediss")
SQL_SCHEMES = ("sqlite", "postgresql", "postgres")


def open_backend(url: str) -> ResultBackend:
    """Open the result backend at ``url``; no connection is made until first use.

    Parameters
    ----------
    url:
        A ``redis://``, ``rediss://``, ``sqlite:///path`` or ``postgresql://`` URL.

    Returns
    -------
    ResultBackend
        A backend owning its own connection pool; call ``close()`` when done.

    Raises
    ------
    ConfigurationError
        If the scheme is not one of the above, or a SQLite URL names no file.
    """
    scheme = urlsplit(url).scheme.lower()
    base_scheme = scheme.split("+", 1)[0]
    if scheme in REDIS_SCHEMES:
        from pyfi.backend.redis import RedisBackend

        return RedisBackend(url)
    if base_scheme in SQL_SCHEMES:
        from pyfi.backend.sql import SQLBackend

        if base_scheme != "sqlite":
            from pyfi.config import normalise_database_url

            # Pins psycopg 3: a bare postgresql:// would select psycopg2.
            url = normalise_database_url(url, "the result backend URI")
        return SQLBackend(url)
    expected = ", ".join(f"{s}://" for s in (*REDIS_SCHEMES, "sqlite", "postgresql"))
    raise ConfigurationError(
        f"the result backend URI {mask_url(url)!r} uses {scheme or 'no scheme'!r}, "
        f"which pyfi does not support; expected one of {expected}"
    )


__all__ = [
    "ResultBackend",
    "open_backend",
]
