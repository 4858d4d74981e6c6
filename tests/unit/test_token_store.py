"""The client's token file: owner-only, one token per database, PYFI_TOKEN first."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pyfi.auth.token_store import find_token, forget_token, save_token
from pyfi.config import load_settings
from pyfi.errors import ConfigurationError

DB_A = "postgresql+psycopg://app:secret@db-a/pyfi"
DB_B = "postgresql+psycopg://app:secret@db-b/pyfi"


def test_token_file_is_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "config" / "logins.json"
    save_token(DB_A, "pyfi_a", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # the database's password is not what the token is filed under
    assert "secret" not in path.read_text()


def test_a_token_is_only_found_for_the_database_that_issued_it(tmp_path: Path) -> None:
    path = tmp_path / "logins.json"
    save_token(DB_A, "pyfi_a", path)
    found = find_token(DB_A, {}, path)
    assert found is not None
    assert found.token == "pyfi_a"
    assert find_token(DB_B, {}, path) is None
    # a second database's login does not replace the first's
    save_token(DB_B, "pyfi_b", path)
    assert [find_token(url, {}, path) is not None for url in (DB_A, DB_B)] == [True, True]


def test_pyfi_token_takes_the_place_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "logins.json"
    save_token(DB_A, "pyfi_a", path)
    found = find_token(DB_A, {"PYFI_TOKEN": "pyfi_env"}, path)
    assert found is not None
    assert (found.token, found.source) == ("pyfi_env", "PYFI_TOKEN")


def test_forgetting_the_last_token_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "logins.json"
    save_token(DB_A, "pyfi_a", path)
    save_token(DB_B, "pyfi_b", path)
    assert forget_token(DB_A, path) == "pyfi_a"
    assert path.exists()
    assert forget_token(DB_B, path) == "pyfi_b"
    assert not path.exists()
    assert forget_token(DB_B, path) is None


def test_a_malformed_file_counts_as_no_login(tmp_path: Path) -> None:
    path = tmp_path / "logins.json"
    path.write_text("{not json")
    assert find_token(DB_A, {}, path) is None


@pytest.mark.parametrize(("value", "hours"), [(None, 12.0), ("1.5", 1.5), ("720", 720.0)])
def test_session_hours_setting(value: str | None, hours: float) -> None:
    environ = {"PYFI_SESSION_HOURS": value} if value else {}
    assert load_settings({}, environ).session_hours == hours


@pytest.mark.parametrize("value", ["0", "-1", "721", "soon", "nan"])
def test_session_hours_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="PYFI_SESSION_HOURS"):
        load_settings({}, {"PYFI_SESSION_HOURS": value})


def test_session_hours_from_the_ini_file(tmp_path: Path) -> None:
    ini = tmp_path / "pyfi.ini"
    ini.write_text("[login]\nsession_hours = 2\n")
    assert load_settings({"ini_path": str(ini)}, {}).session_hours == 2.0
