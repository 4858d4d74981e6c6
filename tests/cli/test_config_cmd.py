"""`flow --config`, `flow config show`, and how configuration errors reach the user."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pyfi.cli import cli
from pyfi.config import default_data_dir, default_ini_path, embedded_defaults, read_ini, write_ini

UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:1/x"
SECRET_URIS = {
    "database_url": "postgresql+psycopg://u:dbpw@db.example/pyfi",
    "broker_url": "amqp://guest:mqpw@mq.example:5672//",
    "backend_url": "redis://:cachepw@cache.example:6379/0",
}
SECRETS = ("dbpw", "mqpw", "cachepw")


def run(*args: str, input: str | None = None) -> Result:
    """`flow` in-process, reading the test's (monkeypatched) environment."""
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=True)


def one_user_error(result: Result) -> str:
    """Assert ``result`` failed with exit 2 and one error line, no traceback; return the line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_config_interactive_writes_default_ini() -> None:
    # Given no ini file
    defaults = embedded_defaults(default_data_dir())
    # When `flow --config` gets a database URI and two empty answers (backend, broker)
    result = run("--config", input="postgresql://u@db.example/pyfi\n\n\n")
    # Then the default ini holds the answer and the kept current values, owner-only
    path = default_ini_path()
    assert result.exit_code == 0, result.output
    assert result.output.endswith(f"Configuration file created at {path}\n")
    assert read_ini(path, required=True) == {
        "database_url": "postgresql://u@db.example/pyfi",
        "broker_url": defaults["broker_url"],
        "backend_url": defaults["backend_url"],
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_config_interactive_keeps_pyfi_ini_values_without_echoing_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given PYFI_INI naming an existing, world-readable ini whose URIs carry passwords
    path = tmp_path / "team.ini"
    write_ini(path, SECRET_URIS)
    path.chmod(0o644)
    monkeypatch.setenv("PYFI_INI", str(path))
    # When every prompt of `flow --config` is answered with Enter
    result = run("--config", input="\n\n\n")
    # Then the prompts show masked URIs only, and the file keeps its values, owner-only
    assert result.exit_code == 0, result.output
    assert "postgresql+psycopg://u:***@db.example/pyfi" in result.output
    assert "amqp://guest:***@mq.example:5672//" in result.output
    assert not any(secret in result.output for secret in SECRETS)
    assert f"Configuration file created at {path}" in result.output
    assert read_ini(path, required=True) == SECRET_URIS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("named_by", ["PYFI_INI", "--ini"])
def test_config_creates_a_new_ini_at_the_named_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named_by: str
) -> None:
    # Given an ini path that does not exist yet, named by PYFI_INI or --ini
    path = tmp_path / "new.ini"
    args = ["--config"]
    if named_by == "PYFI_INI":
        monkeypatch.setenv("PYFI_INI", str(path))
    else:
        args = ["--ini", str(path), *args]
    # When `flow --config` is answered with Enter throughout
    result = run(*args, input="\n\n\n")
    # Then the file is created there
    assert result.exit_code == 0, result.output
    assert path.exists()


def test_config_with_every_uri_given_asks_nothing() -> None:
    # Given all three URIs on the command line and no input at all
    # When `flow --config` runs
    result = run(
        "--config",
        "--db",
        "postgres://u:pw@db.example/pyfi",
        "--broker",
        "amqp://mq.example:5672//",
        "--backend",
        "redis://cache.example:6379/0",
    )
    # Then nothing is prompted and the ini holds the given URIs
    path = default_ini_path()
    assert result.exit_code == 0, result.output
    # (with a warning that the password was on the command line)
    assert result.output == (
        "warning: the --db URI carries a password, which `ps` and shell history show to "
        f"others; set PYFI_DB or keep it in the ini file instead\n"
        f"Configuration file created at {path}\n"
    )
    assert read_ini(path, required=True) == {
        "database_url": "postgres://u:pw@db.example/pyfi",
        "broker_url": "amqp://mq.example:5672//",
        "backend_url": "redis://cache.example:6379/0",
    }


@pytest.mark.parametrize(
    ("option", "uri"),
    [("--db", "nonsense"), ("--broker", "redis://localhost:6379/0"), ("--backend", "amqp://h//")],
)
def test_config_malformed_option_writes_nothing(option: str, uri: str) -> None:
    # Given a bad URI passed to `flow --config`
    # When it runs
    result = run("--config", option, uri, input="\n\n\n")
    # Then it exits 2 with one line naming the option, and writes no file
    assert option in one_user_error(result)
    assert not default_ini_path().exists()


def test_config_malformed_answer_writes_nothing() -> None:
    # Given a malformed database URI typed at the prompt
    # When `flow --config` runs
    result = run("--config", input="not-a-uri\n\n\n")
    # Then it exits 2 with one line quoting the answer, and writes no file
    assert "'not-a-uri'" in one_user_error(result)
    assert not default_ini_path().exists()


def test_config_malformed_answer_is_not_blamed_on_an_option() -> None:
    # Given a malformed database URI typed at the prompt, with no --db option
    # When `flow --config` runs
    line = one_user_error(run("--config", input="not-a-uri\n\n\n"))
    # Then the error does not claim the value came from --db
    assert "--db" not in line


def test_config_rewrites_an_unreadable_ini_as_its_error_suggests() -> None:
    # Given a default ini that is not an ini file, whose error points at `flow --config`
    path = default_ini_path()
    path.parent.mkdir(parents=True)
    path.write_text("this is not an ini file\n")
    assert "flow --config" in one_user_error(run("config", "show"))
    # When `flow --config` is run with every URI given
    result = run(
        "--config",
        *("--db", "sqlite:////tmp/x.sqlite"),
        *("--broker", "memory://"),
        *("--backend", "sqlite:////tmp/results.sqlite"),
    )
    # Then it replaces the file
    assert result.exit_code == 0, result.output


def test_config_show_masks_passwords_and_names_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a database URI with a password in PYFI_DB and nothing else configured
    monkeypatch.setenv("PYFI_DB", SECRET_URIS["database_url"])
    # When `flow config show` runs
    result = run("config", "show")
    # Then the URI is shown masked, from "env", and the others from "default"
    assert result.exit_code == 0, result.output
    assert "dbpw" not in result.output
    rows = {
        cells[0]: cells[1:]
        for line in result.output.splitlines()
        if len(cells := [c.strip() for c in line.strip("│").split("│")]) == 3
    }
    assert rows["database_url"] == ["postgresql+psycopg://u:***@db.example/pyfi", "env"]
    assert rows["broker_url"][1] == "default"
    assert rows["ini_path"][0] == str(default_ini_path())


def test_config_show_json_parses_with_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given passworded URIs from an ini file, and a broker override via --broker
    path = tmp_path / "pyfi.ini"
    write_ini(path, SECRET_URIS)
    monkeypatch.setenv("PYFI_INI", str(path))
    # When `flow config show --json` runs
    result = run("--broker", "memory://", "config", "show", "--json")
    # Then it is JSON with masked URIs and the source of each
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["database_url"] == "postgresql+psycopg://u:***@db.example/pyfi"
    assert shown["backend_url"] == "redis://:***@cache.example:6379/0"
    assert shown["broker_url"] == "memory://"
    assert shown["sources"] == {"database_url": "ini", "broker_url": "option", "backend_url": "ini"}
    assert shown["ini_path"] == str(path)
    assert not any(secret in result.output for secret in SECRETS)


def test_bad_pyfi_db_fails_a_command_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a malformed URI in PYFI_DB
    monkeypatch.setenv("PYFI_DB", "localhost/pyfi")
    # When any database command runs
    line = one_user_error(run("ls", "queues"))
    # Then the one error line names PYFI_DB and quotes the value
    assert "PYFI_DB" in line
    assert "'localhost/pyfi'" in line


@pytest.mark.parametrize(
    ("args", "env_debug", "traceback"),
    [
        (["--debug"], None, True),
        ([], "1", True),
        ([], None, False),
    ],
)
def test_unreachable_database_traceback_only_with_debug(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env_debug: str | None, traceback: bool
) -> None:
    # Given a database URI nothing listens on, and debug on or off
    if env_debug is not None:
        monkeypatch.setenv("PYFI_DEBUG", env_debug)
    # When a database command runs
    result = run(*args, "--db", UNREACHABLE_DB, "ls", "queues")
    # Then it exits 1 (the environment is broken) with one error line, and a traceback iff debug
    assert result.exit_code == 1, result.output
    assert ("Traceback" in result.output) is traceback
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "cannot use the database" in errors[0]
