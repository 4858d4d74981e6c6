"""The connection the Python API uses when the caller does not pass one.

Scripts written against the reference API (``Socket(name=...)``,
``Processor(...)``, ``@processor``) never say which database, broker or
result backend they mean: they get the same settings the ``flow`` CLI would
(``PYFI_*`` environment, then the ini file, then the embedded default).
:func:`connect` replaces that default, for programs that manage settings
themselves and for tests.
"""

from __future__ import annotations

import threading
from typing import Any

from pyfi.client.calls import Client
from pyfi.config import Settings, load_settings
from pyfi.db.session import Database

_lock = threading.Lock()
_default: Client | None = None


def connect(settings: Settings | None = None, **options: Any) -> Client:
    """Make a new default connection, closing the previous one.

    Parameters
    ----------
    settings:
        Settings to use as they are; when omitted they are loaded like the
        CLI loads them, with ``options`` (``database_url``, ``broker_url``,
        ``backend_url``, ``ini_path``) taking precedence.
    """
    global _default
    chosen = settings if settings is not None else load_settings(options)
    with _lock:
        previous, _default = _default, Client(chosen)
    if previous is not None:
        previous.close()
    return _default


def client() -> Client:
    """The default connection, created from the loaded settings on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = Client(load_settings())
        return _default


def database() -> Database:
    """The default connection's meta-model database."""
    return client().database


def disconnect() -> None:
    """Close the default connection; the next use opens a new one."""
    global _default
    with _lock:
        previous, _default = _default, None
    if previous is not None:
        previous.close()
