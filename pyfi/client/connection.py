"""The connection the Python API uses when the caller does not pass one.

Scripts written against the reference API (``Socket(name=...)``,
``Processor(...)``, ``@processor``) never say which database, broker or
result backend they mean: they get the same settings the ``flow`` CLI would
(``PYFI_*`` environment, then the ini file, then the embedded default).
:func:`connect` replaces that default, for programs that manage settings
themselves and for tests.

A login counts as it does for ``flow``: the default connection acts as the
user of the token ``flow login`` kept for its database, or of ``PYFI_TOKEN``;
:func:`connect` takes a token of its own too.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pyfi.auth.token_store import FoundToken, find_token
from pyfi.client.calls import Client
from pyfi.config import Settings, load_settings
from pyfi.db.session import Database


class _Default:
    """The one default connection of this process, swapped under a lock."""

    lock = threading.Lock()
    client: Client | None = None


def connect(
    settings: Settings | None = None, *, token: str | None = None, **options: Any
) -> Client:
    """Make a new default connection, closing the previous one.

    Parameters
    ----------
    settings:
        Settings to use as they are; when omitted they are loaded like the
        CLI loads them, with ``options`` (``database_url``, ``broker_url``,
        ``backend_url``, ``ini_path``) taking precedence.
    token:
        A login token to act with; by default, ``PYFI_TOKEN`` or the one
        ``flow login`` kept for the database.
    """
    chosen = settings if settings is not None else load_settings(options, os.environ)
    login = FoundToken(token, "the token given to connect()") if token else _login(chosen)
    new = Client(chosen, login=login)
    with _Default.lock:
        previous, _Default.client = _Default.client, new
    if previous is not None:
        previous.close()
    return new


def client() -> Client:
    """The default connection, created from the loaded settings on first use."""
    with _Default.lock:
        if _Default.client is None:
            settings = load_settings({}, os.environ)
            _Default.client = Client(settings, login=_login(settings))
        return _Default.client


def _login(settings: Settings) -> FoundToken | None:
    """The token the default connection logs in with, if any (see the module docstring)."""
    return find_token(settings.database_url, os.environ)


def database() -> Database:
    """The default connection's meta-model database."""
    return client().database


def disconnect() -> None:
    """Close the default connection; the next use opens a new one."""
    with _Default.lock:
        previous, _Default.client = _Default.client, None
    if previous is not None:
        previous.close()


def or_default(chosen: Client | None) -> Client:
    """``chosen`` if the caller gave one, else the default connection."""
    return chosen if chosen is not None else client()
