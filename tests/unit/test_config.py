"""Settings: precedence, sources, embedded defaults, URI validation, masking and the ini file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pyfi.config import (
    ENV_KEYS,
    default_data_dir,
    embedded_defaults,
    filesystem_broker_dir,
    load_settings,
    mask_url,
    read_ini,
    write_ini,
)
from pyfi.errors import ConfigurationError

FIELDS = ("database_url", "broker_url", "backend_url")
LAYERS = ("option", "env", "ini", "default")

# One distinct, already-normalised URI per field and layer, so the winner is unambiguous.
URIS = {
    "database_url": {
        "option": "sqlite:////from/option.sqlite",
        "env": "sqlite:////from/env.sqlite",
        "ini": "sqlite:////from/ini.sqlite",
    },
    "broker_url": {
        "option": "amqp://option-host:5672//",
        "env": "amqp://env-host:5672//",
        "ini": "amqp://ini-host:5672//",
    },
    "backend_url": {
        "option": "redis://option-host:6379/0",
        "env": "redis://env-host:6379/0",
        "ini": "redis://ini-host:6379/0",
    },
}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("top", LAYERS)
def test_load_settings_highest_layer_wins_per_field(tmp_path: Path, field: str, top: str) -> None:
    # Given `field` set in `top` and every lower layer, and no other field set anywhere
    layers = LAYERS[LAYERS.index(top) :]
    data_dir = tmp_path / "data"
    ini = tmp_path / "pyfi.ini"
    write_ini(ini, {field: URIS[field]["ini"]} if "ini" in layers else {})
    environ = {"PYFI_DATA_DIR": str(data_dir), "PYFI_INI": str(ini)}
    if "env" in layers:
        environ[ENV_KEYS[field]] = URIS[field]["env"]
    options = {field: URIS[field]["option"]} if "option" in layers else {}
    # When the settings are loaded
    settings = load_settings(options, environ)
    # Then `field` comes from `top`, and the other fields keep their embedded defaults
    defaults = embedded_defaults(data_dir)
    expected = defaults[field] if top == "default" else URIS[field][top]
    assert getattr(settings, field) == expected
    assert settings.sources[field] == top
    for other in set(FIELDS) - {field}:
        assert getattr(settings, other) == defaults[other]
        assert settings.sources[other] == "default"


def test_load_settings_ignores_options_given_as_none_and_empty_env(tmp_path: Path) -> None:
    # Given an option explicitly None (not given) and an empty environment variable
    environ = {"PYFI_DATA_DIR": str(tmp_path), "PYFI_DB": ""}
    # When the settings are loaded
    settings = load_settings({"database_url": None}, environ)
    # Then neither counts, and the embedded default is used
    assert settings.sources["database_url"] == "default"
    assert settings.database_url == embedded_defaults(tmp_path)["database_url"]


def test_load_settings_ini_option_beats_pyfi_ini(tmp_path: Path) -> None:
    # Given one ini named by PYFI_INI and another named by the --ini option
    env_ini, option_ini = tmp_path / "env.ini", tmp_path / "option.ini"
    write_ini(env_ini, {"database_url": "sqlite:////env-ini.sqlite"})
    write_ini(option_ini, {"database_url": "sqlite:////option-ini.sqlite"})
    environ = {"PYFI_INI": str(env_ini)}
    # When loaded with and without the option
    with_option = load_settings({"ini_path": str(option_ini)}, environ)
    without_option = load_settings({}, environ)
    # Then the option's file wins, and PYFI_INI is used on its own
    assert with_option.ini_path == option_ini
    assert with_option.database_url == "sqlite:////option-ini.sqlite"
    assert without_option.ini_path == env_ini
    assert without_option.database_url == "sqlite:////env-ini.sqlite"
    assert without_option.sources["database_url"] == "ini"


@pytest.mark.parametrize("named_by", ["option", "env"])
def test_load_settings_explicit_missing_ini_raises(tmp_path: Path, named_by: str) -> None:
    # Given an ini path that does not exist, named explicitly
    missing = tmp_path / "nowhere.ini"
    options = {"ini_path": str(missing)} if named_by == "option" else {}
    environ = {"PYFI_INI": str(missing)} if named_by == "env" else {}
    # When / Then loading fails and names the file
    with pytest.raises(ConfigurationError, match=r"nowhere\.ini does not exist"):
        load_settings(options, environ)


def test_load_settings_missing_default_ini_is_fine(isolated_environment: Path) -> None:
    # Given a fresh home with no ini file at the default path
    # When the settings are loaded from an empty environment
    settings = load_settings({}, {})
    # Then the per-user paths are used, the ini is not created, and the defaults apply
    assert settings.ini_path.is_relative_to(isolated_environment)
    assert settings.data_dir == default_data_dir()
    assert settings.data_dir.is_relative_to(isolated_environment)
    assert not settings.ini_path.exists()
    assert set(settings.sources.values()) == {"default"}


def test_load_settings_embedded_defaults_live_under_data_dir(tmp_path: Path) -> None:
    # Given PYFI_DATA_DIR and nothing else
    data_dir = tmp_path / "data"
    # When the settings are loaded
    settings = load_settings({}, {"PYFI_DATA_DIR": str(data_dir)})
    # Then a SQLite database, a broker folder and SQLite results all live under it
    root = data_dir.resolve()
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{root / 'pyfi.sqlite'}"
    assert settings.broker_url.startswith("filesystem://")
    assert filesystem_broker_dir(settings.broker_url) == root / "broker"
    assert settings.backend_url == f"sqlite:///{root / 'results.sqlite'}"
    assert settings.is_embedded


@pytest.mark.parametrize(
    ("field", "uri"),
    [
        ("database_url", "postgresql://u@127.0.0.1/pyfi"),
        ("broker_url", "amqp://guest@localhost:5672//"),
        ("backend_url", "redis://localhost:6379/0"),
    ],
)
def test_settings_is_embedded_false_with_any_server(tmp_path: Path, field: str, uri: str) -> None:
    # Given the embedded defaults except one server URI
    # When the settings are loaded
    settings = load_settings({field: uri}, {"PYFI_DATA_DIR": str(tmp_path)})
    # Then the settings are no longer embedded
    assert not settings.is_embedded


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@db.example:5432/pyfi", "postgresql+psycopg://u@db.example:5432/pyfi"),
        ("postgres://u:pw@db.example/pyfi", "postgresql+psycopg://u:pw@db.example/pyfi"),
        ("postgresql+psycopg2://u@db.example/pyfi", "postgresql+psycopg://u@db.example/pyfi"),
        ("postgresql+psycopg://u@db.example/pyfi", "postgresql+psycopg://u@db.example/pyfi"),
    ],
)
def test_load_settings_pins_postgres_to_psycopg3(given: str, expected: str) -> None:
    # Given a PostgreSQL URI in any common spelling
    # When the settings are loaded
    settings = load_settings({}, {"PYFI_DB": given})
    # Then it selects the psycopg 3 driver and keeps everything else, password included
    assert settings.database_url == expected


@pytest.mark.parametrize(
    ("field", "uri", "named_by", "fragment"),
    [
        ("database_url", "nonsense", "env", "malformed"),
        ("database_url", "mysql://u@h/pyfi", "option", "'mysql'"),
        ("database_url", "postgresql:///pyfi", "env", "names no host"),
        ("broker_url", "localhost:5672", "env", "malformed"),
        ("broker_url", "redis://localhost:6379/0", "option", "'redis'"),
        ("broker_url", "amqp://localhost:notaport//", "env", "invalid port"),
        ("broker_url", "amqp:///vhost", "option", "names no host"),
        ("broker_url", "filesystem://", "env", "names no folder"),
        ("backend_url", "amqp://localhost//", "option", "'amqp'"),
        ("backend_url", "redis://", "env", "names no host"),
    ],
)
def test_load_settings_bad_uri_names_its_source(
    field: str, uri: str, named_by: str, fragment: str
) -> None:
    # Given one bad URI from the command line or the environment
    options = {field: uri} if named_by == "option" else {}
    environ = {ENV_KEYS[field]: uri} if named_by == "env" else {}
    # When the settings are loaded
    with pytest.raises(ConfigurationError) as caught:
        load_settings(options, environ)
    # Then the message says what is wrong and where the value came from
    option_name = {"database_url": "--db", "broker_url": "--broker", "backend_url": "--backend"}
    where = option_name[field] if named_by == "option" else ENV_KEYS[field]
    assert fragment in caught.value.message
    assert where in caught.value.message


def test_load_settings_bad_uri_from_ini_names_the_file(tmp_path: Path) -> None:
    # Given an ini file holding an unsupported backend URI
    ini = tmp_path / "team.ini"
    write_ini(ini, {"backend_url": "memcached://localhost"})
    # When / Then loading fails and names the ini file
    with pytest.raises(ConfigurationError, match=r"team\.ini uses 'memcached'"):
        load_settings({"ini_path": str(ini)}, {})


def test_load_settings_bad_uri_error_masks_the_password() -> None:
    # Given a broker URI with a password and an invalid port
    # When the settings are loaded
    with pytest.raises(ConfigurationError) as caught:
        load_settings({}, {"PYFI_BROKER": "amqp://guest:s3cret@localhost:bad//"})
    # Then the error shows the URI without its password
    assert "guest:***@localhost" in caught.value.message
    assert "s3cret" not in caught.value.message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://u:s3cret@db:5432/pyfi", "postgresql+psycopg://u:***@db:5432/pyfi"),
        ("amqp://guest:guest@localhost:5672//", "amqp://guest:***@localhost:5672//"),
        ("redis://:s3cret@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("https://u:tok@github.com/o/r.git?x=1", "https://u:***@github.com/o/r.git?x=1"),
    ],
)
def test_mask_url_hides_password(url: str, expected: str) -> None:
    # Given a URI with a password
    # When it is masked
    # Then only the password is replaced
    assert mask_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/pyfi/pyfi.sqlite",
        "filesystem:///var/lib/pyfi/broker",
        "postgresql+psycopg://db:5432/pyfi?sslmode=require",
        "redis://localhost:6379/0",
        "not a url",
    ],
)
def test_mask_url_leaves_passwordless_urls_alone(url: str) -> None:
    # Given a URI without a password
    # When / Then masking returns it unchanged
    assert mask_url(url) == url


def test_mask_url_keeps_ipv6_brackets() -> None:
    # Given a URI with a password and an IPv6 host
    # When / Then masking keeps the host a valid IPv6 literal
    assert mask_url("postgresql://u:pw@[::1]:5432/pyfi") == "postgresql://u:***@[::1]:5432/pyfi"


def test_settings_masked_hides_every_password(tmp_path: Path) -> None:
    # Given settings whose three URIs all carry passwords
    settings = load_settings(
        {
            "database_url": "postgresql://u:dbpw@db/pyfi",
            "broker_url": "amqp://u:brokerpw@mq:5672//",
            "backend_url": "redis://:backendpw@cache:6379/0",
        },
        {"PYFI_DATA_DIR": str(tmp_path)},
    )
    # When they are masked
    masked = settings.masked()
    # Then no password survives, and the other fields are strings
    assert not any(pw in str(masked) for pw in ("dbpw", "brokerpw", "backendpw"))
    assert masked["database_url"] == "postgresql+psycopg://u:***@db/pyfi"
    assert masked["data_dir"] == str(tmp_path)
    assert masked["debug"] == "false"


def test_write_ini_round_trips_with_owner_only_mode(tmp_path: Path) -> None:
    # Given URIs with a percent-encoded password, and a target in a missing folder
    values = {
        "database_url": "postgresql+psycopg://u:p%40ss%25w@db:5432/pyfi",
        "broker_url": "amqp://guest:guest@mq:5672//",
        "backend_url": "redis://cache:6379/0",
    }
    path = tmp_path / "new" / "pyfi.ini"
    # When they are written and read back
    write_ini(path, values)
    # Then the same values come back, the file is owner-only, and no temp file is left
    assert read_ini(path, required=True) == values
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["pyfi.ini"]


def test_write_ini_tightens_an_existing_world_readable_file(tmp_path: Path) -> None:
    # Given an existing ini readable by everyone
    path = tmp_path / "pyfi.ini"
    path.write_text("[database]\nuri = sqlite:////old.sqlite\n")
    path.chmod(0o644)
    # When it is rewritten with only a database URI
    write_ini(path, {"database_url": "sqlite:////new.sqlite"})
    # Then only the new value is there and the file is owner-only
    assert read_ini(path, required=True) == {"database_url": "sqlite:////new.sqlite"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_read_ini_skips_blank_values(tmp_path: Path) -> None:
    # Given an ini with a blank broker URI and no backend section
    path = tmp_path / "pyfi.ini"
    path.write_text("[database]\nuri = sqlite:////x.sqlite\n[broker]\nuri =\n")
    # When it is read
    # Then only the database URI is returned
    assert read_ini(path, required=True) == {"database_url": "sqlite:////x.sqlite"}


def test_read_ini_malformed_file_raises(tmp_path: Path) -> None:
    # Given an ini file with no section header
    path = tmp_path / "broken.ini"
    path.write_text("uri = sqlite:////x.sqlite\n")
    # When / Then reading it fails and names the file
    with pytest.raises(ConfigurationError, match=r"cannot read ini file .*broken\.ini"):
        read_ini(path, required=False)


def test_load_settings_unreadable_explicit_ini_raises(tmp_path: Path) -> None:
    # Given PYFI_INI naming something that exists but cannot be read as a file
    folder = tmp_path / "pyfi.ini"
    folder.mkdir()
    # When / Then loading fails instead of silently using the defaults
    with pytest.raises(ConfigurationError):
        load_settings({}, {"PYFI_INI": str(folder)})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("", False),
        ("debug", False),
    ],
)
def test_load_settings_parses_pyfi_debug(value: str, expected: bool) -> None:
    # Given PYFI_DEBUG set to `value`
    # When the settings are loaded
    settings = load_settings({}, {"PYFI_DEBUG": value})
    # Then debug is on only for the truthy spellings
    assert settings.debug is expected


def test_load_settings_debug_option_turns_debug_on() -> None:
    # Given --debug on the command line and PYFI_DEBUG off
    # When the settings are loaded
    settings = load_settings({"debug": True}, {"PYFI_DEBUG": "0"})
    # Then debug is on
    assert settings.debug is True
