"""``USER``: the name the default connection acts as.

``from pyfi.client.user import USER`` gives the database login of the
default connection (``current_user`` on PostgreSQL, the operating-system
user on the embedded SQLite database): the name rows record as their owner.
It is resolved when first asked for, not when this module is imported, so
importing never connects; and it follows :func:`pyfi.client.connection.connect`.
"""

from __future__ import annotations


def current_user() -> str:
    """The database login of the default connection.

    Raises
    ------
    DatabaseUnavailable
        The default database cannot be reached.
    """
    from pyfi.client.connection import database

    return database().current_user()


def __getattr__(name: str) -> str:
    if name == "USER":
        return current_user()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
