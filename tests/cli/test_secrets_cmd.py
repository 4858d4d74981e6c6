"""Secrets at every door of `flow`: listings, dumps, exports, settings, and passwords.

A token may hide in a processor's ``gitrepo`` (as the user alone, or as a
query parameter), in its ``requirements`` and in a status reason quoting a
tool; none of them may be printed. A password is never read from the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from pyfi.cli import cli
from pyfi.db import models, schema
from pyfi.db.session import Database
from pyfi.passwords import verify_password
from tests.conftest import Flow

TOKEN = "ghp_Us3rT0ken"
QUERY_TOKEN = "qT0kenValue"
REQUIREMENT_TOKEN = "reqT0kenValue"
REASON_TOKEN = "reasonT0ken"
SECRETS = (TOKEN, QUERY_TOKEN, REQUIREMENT_TOKEN, REASON_TOKEN)

GITREPO = f"https://{TOKEN}@github.com/org/repo.git"
MASKED_GITREPO = "https://***@github.com/org/repo.git"
REQUIREMENTS = (
    f"private @ git+https://{REQUIREMENT_TOKEN}@github.com/org/private\n"
    f"mirror @ https://pkgs.example/mirror.whl?token={QUERY_TOKEN}\n"
    "requests==2.31.0"
)
MASKED_REQUIREMENTS = (
    "private @ git+https://***@github.com/org/private\n"
    "mirror @ https://pkgs.example/mirror.whl?token=***\n"
    "requests==2.31.0"
)


@pytest.fixture
def secret_processor(flow: Flow, database: Database) -> str:
    """A processor whose gitrepo, requirements and status reason all carry tokens."""
    flow("add", "processor", "-n", "p", "-m", "m", "-g", GITREPO)
    with database.transaction() as session:
        processor = session.scalars(select(models.Processor)).one()
        processor.requirements = REQUIREMENTS
        processor.status_reason = (
            f"cannot clone: unable to access 'https://{REASON_TOKEN}@git.example/r.git/'"
        )
    return "p"


def _assert_no_secret(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{leaked} printed in: {text}"


def test_ls_processors_masks_user_tokens_requirements_and_reasons(
    flow: Flow, secret_processor: str
) -> None:
    # Given a processor with tokens in its URL, requirements and status reason
    # When it is listed as a table, as JSON, and shown on its own
    table = flow("ls", "processors").output
    records = json.loads(flow("ls", "processors", "--json").output)
    shown = flow("ls", "processor", "-n", secret_processor, "--json").output
    # Then no token is printed, and the masked URLs say where they point
    for text in (table, json.dumps(records), shown):
        _assert_no_secret(text)
    assert records[0]["gitrepo"] == MASKED_GITREPO
    assert records[0]["requirements"] == MASKED_REQUIREMENTS
    assert "https://***@git.example/r.git/" in records[0]["status_reason"]
    assert MASKED_GITREPO in table


def test_db_json_masks_urls_in_every_table(flow: Flow, secret_processor: str) -> None:
    # Given a processor with tokens
    # When the database is dumped as JSON
    output = flow("db", "json").output
    # Then no token is in it, and the processor's URL is there masked
    _assert_no_secret(output)
    [processor] = json.loads(output)["processors"]
    assert processor["gitrepo"] == MASKED_GITREPO
    assert processor["requirements"] == MASKED_REQUIREMENTS


def test_compose_export_masks_tokens_and_applies_back_keeping_them(
    flow: Flow, secret_processor: str, database: Database, tmp_path: Path
) -> None:
    # Given a network exported to a file without --with-secrets
    target = tmp_path / "network.yaml"
    flow("compose", "export", "-o", str(target))
    text = target.read_text()
    # Then its URLs are masked
    _assert_no_secret(text)
    assert f"gitrepo: {MASKED_GITREPO}" in text
    # When it is applied back to the same database
    applied = flow("compose", "apply", str(target)).output
    # Then nothing changes: the stored secrets are kept, not replaced by ***
    assert "1 processor (1 unchanged)" in applied
    with database.transaction() as session:
        processor = session.scalars(select(models.Processor)).one()
        assert (processor.gitrepo, processor.requirements) == (GITREPO, REQUIREMENTS)
    # And a database that never had the secrets refuses the masked file
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    empty = Database(other)
    schema.upgrade(empty)
    empty.dispose()
    error = flow.fails("--db", other, "compose", "apply", str(target))
    assert "processor 'p': its gitrepo" in error
    assert "supply the real credentials" in error
    # And --with-secrets writes them as stored
    text = flow("compose", "export", "--with-secrets").output
    assert f"gitrepo: {GITREPO}" in text
    assert REQUIREMENT_TOKEN in text


def test_config_show_masks_user_tokens_and_secret_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a broker URL with a token as its user and a database URL with ?password=
    monkeypatch.setenv("PYFI_BROKER", f"amqp://{TOKEN}@mq.example:5672//")
    monkeypatch.setenv("PYFI_DB", f"postgresql+psycopg://db.example/pyfi?password={QUERY_TOKEN}")
    # When the settings are shown, as a table and as JSON
    table = CliRunner().invoke(cli, ["config", "show"])
    shown = CliRunner().invoke(cli, ["config", "show", "--json"])
    # Then neither secret is printed
    assert table.exit_code == shown.exit_code == 0, table.output + shown.output
    _assert_no_secret(table.output + shown.output)
    settings = json.loads(shown.output)
    assert settings["broker_url"] == "amqp://***@mq.example:5672//"
    assert settings["database_url"] == "postgresql+psycopg://db.example/pyfi?password=***"


# --- passwords ------------------------------------------------------------------

PASSWORD = "correct-horse-battery"


def _password_of(database: Database, name: str) -> str:
    with database.transaction() as session:
        user = session.scalars(select(models.User).where(models.User.name == name)).one()
        return user.password_hash


@pytest.mark.parametrize("given", [["-p", PASSWORD], [f"--password={PASSWORD}"], [f"-p{PASSWORD}"]])
def test_add_user_refuses_a_password_on_the_command_line(
    flow: Flow, database: Database, given: list[str]
) -> None:
    # When a password is given as an argument
    result = flow("add", "user", "-n", "joe", "-e", "joe@x.org", *given, ok=False)
    # Then it is refused in one line that says what to do, without repeating it
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "never taken on the command line" in errors[0]
    assert "--password-file" in errors[0]
    assert "PYFI_PASSWORD" in errors[0]
    assert PASSWORD not in result.output
    # And no user was added
    assert json.loads(flow("ls", "users", "--json").output) == []


def test_add_user_with_p_alone_asks_hidden_and_twice(flow: Flow, database: Database) -> None:
    # When -p is given alone (before another option) and the password typed twice
    result = flow(
        "add", "user", "-n", "joe", "-p", "-e", "joe@x.org", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    # Then the user has that password, and it was not echoed
    assert verify_password(_password_of(database, "joe"), PASSWORD)
    assert PASSWORD not in result.output
    assert "Repeat for confirmation" in result.output


def test_add_user_reads_the_password_from_a_file_or_stdin(
    flow: Flow, database: Database, tmp_path: Path
) -> None:
    # Given a password file (with its trailing newline)
    path = tmp_path / "password"
    path.write_text(f"{PASSWORD}\n", encoding="utf-8")
    # When users are added from the file and from standard input
    flow("add", "user", "-n", "ann", "-e", "ann@x.org", "--password-file", str(path))
    flow(
        "add", "user", "-n", "bob", "-e", "bob@x.org", "--password-file", "-", input="b0b-secret\n"
    )
    # Then each has its password, without the newline
    assert verify_password(_password_of(database, "ann"), PASSWORD)
    assert verify_password(_password_of(database, "bob"), "b0b-secret")


def test_user_password_comes_from_the_environment_only_when_it_is_set(
    flow: Flow, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given PYFI_PASSWORD
    monkeypatch.setenv("PYFI_PASSWORD", PASSWORD)
    # When a user is added without a prompt answer
    flow("add", "user", "-n", "joe", "-e", "joe@x.org")
    # Then the password is the environment's
    assert verify_password(_password_of(database, "joe"), PASSWORD)
    # And an update sets it only when -p asks for it
    monkeypatch.setenv("PYFI_PASSWORD", "an0ther-password")
    flow("update", "user", "-n", "joe", "-e", "joe@y.org")
    assert verify_password(_password_of(database, "joe"), PASSWORD)
    flow("update", "user", "-n", "joe", "-p")
    assert verify_password(_password_of(database, "joe"), "an0ther-password")


def test_update_user_refuses_an_empty_password_file(flow: Flow, tmp_path: Path) -> None:
    # Given a user and an empty password file
    flow("add", "user", "-n", "joe", "-e", "joe@x.org", input=f"{PASSWORD}\n{PASSWORD}\n")
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    # When the password is set from it
    error = flow.fails("update", "user", "-n", "joe", "--password-file", str(empty))
    # Then one line says what is wrong with which file
    assert "holds no password on its first line" in error
    assert str(empty) in error


def test_add_user_refuses_a_short_password_from_the_prompt(flow: Flow) -> None:
    # When a too short password is typed at the prompt
    error = flow.fails("add", "user", "-n", "joe", "-e", "joe@x.org", input="short\nshort\n")
    # Then one line says so
    assert "password is too short" in error


def test_error_lines_mask_urls_whatever_raised_them(flow: Flow, tmp_path: Path) -> None:
    # Given a network file with a URL (and its token) pasted into the wrong field
    path = tmp_path / "network.yaml"
    path.write_text(
        f"processors:\n- name: p\n  module: m\n  gitrepo: {GITREPO}\n  concurrency: {GITREPO}\n",
        encoding="utf-8",
    )
    # When it is applied
    error = flow.fails("compose", "apply", str(path))
    # Then the one error line quotes the value, masked
    assert "concurrency must be an integer" in error
    assert MASKED_GITREPO in error
    assert TOKEN not in error


def test_add_processor_warns_of_a_credential_on_the_command_line(flow: Flow) -> None:
    # When processors are added with a token in the URL, and with plain and SSH URLs
    with_token = flow("add", "processor", "-n", "p1", "-m", "m", "-g", GITREPO).output
    plain = flow(
        "add", "processor", "-n", "p2", "-m", "m", "-g", "https://github.com/o/r.git"
    ).output
    ssh = flow("add", "processor", "-n", "p3", "-m", "m", "-g", "git@github.com:o/r.git").output
    # Then only the token is warned about (without repeating it), and each is added
    assert "warning: the --gitrepo value carries a credential" in with_token
    assert TOKEN not in with_token
    assert "warning" not in plain + ssh
    added = [line for line in (with_token + plain + ssh).splitlines() if line.startswith("Added")]
    assert [line.split()[2] for line in added] == ["p1", "p2", "p3"]
