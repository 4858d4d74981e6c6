"""psycopg connections of their own, outside SQLAlchemy's pool.

Two parts of pyfi hold one connection open for the life of a thread: the
change listener (``LISTEN`` needs a session that stays) and the call
recorder (a batch is one statement; a pooled checkout with its ping cost
more than the write). Both open it the same way: autocommit, the pool's
connect timeout, a name of their own for ``pg_stat_activity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from pyfi.config import mask_url
from pyfi.errors import ConfigurationError

if TYPE_CHECKING:  # psycopg is imported when first needed: the CLI starts without it
    import psycopg

# How long a connection attempt may take, here and in the engines' pools.
CONNECT_TIMEOUT_S = 5


def conninfo_from_url(database_url: str) -> str:
    """Turn a SQLAlchemy PostgreSQL URL into a libpq connection string.

    The driver suffix (``+psycopg``) is dropped and query parameters such as
    ``options=-csearch_path%3Dt_abc`` are kept, decoded.

    Raises
    ------
    ConfigurationError
        The URL is not a PostgreSQL URL.
    """
    from psycopg.conninfo import make_conninfo

    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ConfigurationError(f"not a PostgreSQL URL: {mask_url(database_url)}")
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    for key, value in url.query.items():
        params[key] = value[-1] if isinstance(value, tuple) else value
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


def connect_direct(
    conninfo: str, application_name: str, query: str, *, setup: Sequence[str] = ()
) -> tuple[psycopg.Connection[Any], tuple[Any, ...] | None]:
    """An autocommit connection that has run ``setup``, and ``query``'s first row.

    The connection is closed again if a statement fails, so a caller retrying
    through an outage leaks none.
    """
    import psycopg

    connection = psycopg.connect(
        conninfo,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=application_name,
    )
    try:
        for statement in setup:
            connection.execute(statement)
        row = connection.execute(query).fetchone()
    except BaseException:
        connection.close()
        raise
    return connection, row
