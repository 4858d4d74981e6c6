"""Where a client keeps its login tokens: one file, readable by its owner only.

``logins.json`` in the user's config directory maps each database (its URL
with the password masked) to the token ``flow login`` got from it, so a token
is only ever sent back to the database that issued it, and logging in to a
second database does not log out of the first. The file is created with mode
0600 inside a 0700 directory, and rewritten atomically.

:data:`pyfi.config.ENV_TOKEN` (``PYFI_TOKEN``) takes the file's place for
scripts and CI: a token given so is used for whatever database is configured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from pyfi.config import APP_NAME, ENV_TOKEN
from pyfi.masking import mask_url

FILE_NAME = "logins.json"


@dataclass(frozen=True)
class FoundToken:
    """A token, and where it came from ("env" or the file's path) for error messages."""

    token: str
    source: str


def default_store_path() -> Path:
    """The token file: beside the ini file, in the user's config directory."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / FILE_NAME


def database_key(database_url: str) -> str:
    """What a token is filed under: the database's URL with its password masked."""
    return mask_url(database_url)


def find_token(
    database_url: str, environ: Mapping[str, str], path: Path | None = None
) -> FoundToken | None:
    """The token to present to ``database_url``: ``PYFI_TOKEN``, else the stored one."""
    if environ.get(ENV_TOKEN):
        return FoundToken(environ[ENV_TOKEN], ENV_TOKEN)
    path = path or default_store_path()
    token = _read(path).get(database_key(database_url))
    return FoundToken(token, str(path)) if token else None


def save_token(database_url: str, token: str, path: Path | None = None) -> Path:
    """Keep ``token`` for ``database_url``, replacing an earlier one; returns the file."""
    path = path or default_store_path()
    stored = _read(path)
    stored[database_key(database_url)] = token
    _write(path, stored)
    return path


def forget_token(database_url: str, path: Path | None = None) -> str | None:
    """Remove and return the token kept for ``database_url`` (the file goes when empty)."""
    path = path or default_store_path()
    stored = _read(path)
    token = stored.pop(database_key(database_url), None)
    if token is None:
        return None
    if stored:
        _write(path, stored)
    else:
        path.unlink(missing_ok=True)
    return token


def _read(path: Path) -> dict[str, str]:
    """The stored tokens; an unreadable or malformed file counts as no login."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str) and v}


def _write(path: Path, stored: Mapping[str, str]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crashed process that had our pid
    # Created 0600 from the start: never a moment when others could read it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(stored), handle, indent=2, sort_keys=True)
        os.replace(tmp, path)  # atomic: a crash never leaves half a file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
