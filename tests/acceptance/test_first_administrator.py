"""`flow db init` at a terminal asks for the first administrator, the password hidden."""

from __future__ import annotations

import os
import pty
import select
import time
import warnings

import pytest
from sqlalchemy import select as sql_select

from pyfi.db import models
from pyfi.db.session import Database
from pyfi.passwords import verify_password
from tests.acceptance.test_flow_subprocess import _flow_executable
from tests.conftest import requires_postgres

pytestmark = [pytest.mark.slow, pytest.mark.postgres, requires_postgres]

PASSWORD = "typed at the terminal"


class Terminal:
    """A child process on a pseudo-terminal: what it prints, and answers typed to it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        with warnings.catch_warnings():
            # Python 3.12 warns of fork() in a threaded process; the child only execs.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid, fd = pty.fork()
        if pid == 0:  # the child: the terminal is its stdin, stdout and stderr
            os.execve(argv[0], argv, env)
        self.pid, self.fd, self.seen = pid, fd, ""

    def expect(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"waited for {text!r}; saw {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the process ended before {text!r}; saw {self.seen!r}"
                self.seen += chunk.decode(errors="replace")

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def wait(self) -> int:
        while True:  # drain, or the child blocks on a full terminal
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk.decode(errors="replace")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_init_at_a_terminal_asks_for_the_administrator(postgres_url: str) -> None:
    # Given a new PostgreSQL database and `flow db init` run at a terminal
    env = {**os.environ, "PYFI_DB": postgres_url}
    terminal = Terminal([*_flow_executable(), "db", "init"], env)
    # When the name and the password (twice) are typed at the prompts
    terminal.expect("administrator's name")
    terminal.type("alice")
    terminal.expect("Password for alice")
    terminal.type(PASSWORD)
    terminal.expect("Repeat")
    terminal.type(PASSWORD)
    code = terminal.wait()
    # Then alice is the administrator, and the password was never echoed
    assert code == 0, terminal.seen
    assert "Created the administrator alice" in terminal.seen
    assert PASSWORD not in terminal.seen
    database = Database(postgres_url)
    try:
        with database.transaction() as session:
            user = session.scalars(sql_select(models.User)).one()
            assert user.name == "alice"
            assert verify_password(user.password_hash, PASSWORD)
    finally:
        database.dispose()
